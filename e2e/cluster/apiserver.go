package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

const (
	// The service-account issuer and the default audience of tokens, as in most clusters.
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
)

// component is a control-plane part running in this process: cancel stops it, done is
// closed when it has stopped, with err set to why (nil after a clean stop).
type component struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func runComponent(cancel context.CancelFunc, run func() error) *component {
	c := &component{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = run()
	}()
	return c
}

// stoppedWith is the error a component that stopped by itself stands for.
func (c *component) stoppedWith(name string) error {
	if c.err != nil {
		return fmt.Errorf("%s: %w", name, c.err)
	}
	return fmt.Errorf("%s stopped", name)
}

// apiServerArgs is the kube-apiserver command line of this cluster.
func apiServerArgs(p *pki, etcdURL string, port int, certDir string) []string {
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--advertise-address=127.0.0.1",
		"--cert-dir=" + certDir,
		"--tls-cert-file=" + p.servingCert,
		"--tls-private-key-file=" + p.servingKey,
		"--client-ca-file=" + p.caCert,
		"--authorization-mode=Node,RBAC",
		// On top of the default plugins: setting an owner reference with blockOwnerDeletion
		// needs permission on the owner's finalizers, as on clusters that enforce it.
		"--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
		"--service-account-issuer=" + serviceAccountIssuer,
		"--api-audiences=" + serviceAccountIssuer,
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saKey,
		"--service-cluster-ip-range=" + serviceClusterIPs,
		"--allow-privileged=true",
		// The `kubernetes` Service would point at 127.0.0.1, which Endpoints refuse.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
}

// startAPIServer runs kube-apiserver (with apiextensions and the aggregator, as the real binary
// chains them) in this process on a fresh loopback listener. It returns once the server is
// serving; readiness is for the caller to wait for.
func startAPIServer(parent context.Context, p *pki, etcdURL, dir string) (*component, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ok := false
	defer func() {
		if !ok {
			_ = ln.Close()
		}
	}()

	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(apiServerArgs(p, etcdURL, port, filepath.Join(dir, "apiserver"))); err != nil {
		return nil, "", fmt.Errorf("kube-apiserver flags: %w", err)
	}
	s.SecureServing.Listener = ln
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, "", err
	}
	// The server's loopback clients should not log the warnings they cause themselves.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})

	ctx, cancel := context.WithCancel(parent)
	completed, err := s.Complete(ctx)
	if err != nil {
		cancel()
		return nil, "", fmt.Errorf("kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		cancel()
		return nil, "", fmt.Errorf("kube-apiserver options: %w", utilerrors.NewAggregate(errs))
	}
	config, err := app.NewConfig(completed)
	if err != nil {
		cancel()
		return nil, "", fmt.Errorf("kube-apiserver config: %w", err)
	}
	completedConfig, err := config.Complete()
	if err != nil {
		cancel()
		return nil, "", fmt.Errorf("kube-apiserver config: %w", err)
	}
	server, err := app.CreateServerChain(completedConfig)
	if err != nil {
		cancel()
		return nil, "", fmt.Errorf("kube-apiserver: %w", err)
	}
	prepared, err := server.PrepareRun()
	if err != nil {
		cancel()
		return nil, "", fmt.Errorf("kube-apiserver: %w", err)
	}
	c := runComponent(cancel, func() error { return prepared.Run(ctx) })
	ok = true
	return c, fmt.Sprintf("https://127.0.0.1:%d", port), nil
}

// waitUntilReady polls until the API server answers /readyz with ok.
func waitUntilReady(ctx context.Context, client kubernetes.Interface, api *component) error {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case <-api.done:
			return false, api.stoppedWith("kube-apiserver")
		default:
		}
		status := 0
		client.CoreV1().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&status)
		return status == 200, nil
	})
}
