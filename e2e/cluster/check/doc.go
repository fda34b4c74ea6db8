// Package check holds a test of a running portcullis-testcluster through its admin
// kubeconfig: what the Rust suites rely on (ready Deployments, garbage collection, Jobs run
// for real, TokenRequest and RBAC, CRDs with CEL, namespace deletion). It runs only when
// PORTCULLIS_TESTCLUSTER_KUBECONFIG is set; see ../README.md.
package check
