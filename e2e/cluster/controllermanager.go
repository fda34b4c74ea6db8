package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	"k8s.io/kubernetes/cmd/kube-controller-manager/names"
)

// controllers run by the controller manager: what Deployments, Jobs, CronJobs, namespaces,
// ownership and service accounts need, and the few small ones tests of a workload meet (PDB
// status, endpoints, aggregated RBAC roles, TTL of finished Jobs, the default ServiceCIDR).
// No node lifecycle (the simulated node does not heartbeat), no volumes, no cloud.
var controllers = []string{
	names.GarbageCollectorController,
	names.NamespaceController,
	names.DeploymentController,
	names.ReplicaSetController,
	names.JobController,
	names.CronJobController,
	names.TTLAfterFinishedController,
	names.ServiceAccountController,
	names.ServiceAccountTokenController,
	names.RootCACertificatePublisherController,
	names.DisruptionController,
	names.EndpointsController,
	names.EndpointSliceController,
	names.ClusterRoleAggregationController,
	names.PodGarbageCollectorController,
	names.ServiceCIDRController,
}

func controllerManagerArgs(p *pki, kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--controllers=" + strings.Join(controllers, ","),
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + p.saKey,
		"--root-ca-file=" + p.caCert,
		// No HTTPS endpoint of its own: nothing scrapes it.
		"--secure-port=0",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
	}
}

// startControllerManager runs kube-controller-manager in this process. Its Run waits for the
// API server to be healthy itself, then starts the controllers.
func startControllerManager(parent context.Context, p *pki, kubeconfig string, logger klog.Logger) (*component, error) {
	s, err := options.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, err
	}
	known, disabled, aliases := app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases()
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range s.Flags(known, disabled, aliases).FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(controllerManagerArgs(p, kubeconfig)); err != nil {
		return nil, fmt.Errorf("kube-controller-manager flags: %w", err)
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	config, err := s.Config(known, disabled, aliases)
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager config: %w", err)
	}
	ctx, cancel := context.WithCancel(klog.NewContext(parent, logger))
	return runComponent(cancel, func() error { return app.Run(ctx, config.Complete()) }), nil
}
