// Command portcullis-testcluster runs a minimal, real Kubernetes control plane on loopback for
// Portcullis' test suites: embedded etcd, kube-apiserver and kube-controller-manager built from
// the Kubernetes project's own Go modules, and a simulated node. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/portcullis-dev/portcullis/e2e/cluster/node"
)

const usage = `usage: portcullis-testcluster [--dir DIR] [--image-binary IMAGE=PATH]... [--node-name NAME] [-v]

Runs etcd, kube-apiserver, kube-controller-manager and a simulated node on 127.0.0.1. When
the cluster is ready it writes DIR/ready and prints one line on stdout:

  portcullis-testcluster ready kubeconfig=<absolute path>

SIGTERM or SIGINT stops everything (and removes DIR when it was a temporary one).

`

type config struct {
	dir      string
	images   node.ImageBinaries
	nodeName string
	verbose  bool
}

func parseFlags(args []string) (*config, error) {
	c := &config{images: node.ImageBinaries{}}
	fs := flag.NewFlagSet("portcullis-testcluster", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.dir, "dir", "", "run directory, kept after exit (default: a temporary one, removed on exit)")
	fs.Var(c.images, "image-binary", "`IMAGE=PATH`: run-to-completion pods with this image repository (no tag) run PATH (repeatable)")
	fs.StringVar(&c.nodeName, "node-name", "testcluster-node", "name of the simulated node")
	fs.BoolVar(&c.verbose, "v", false, "verbose component logs; node events also on stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "portcullis-testcluster:", err)
		os.Exit(2)
	}
	os.Exit(run(cfg))
}

// ownedEntries are what a run creates in its directory; a kept --dir is cleared of them first
// so that every run starts with a fresh cluster.
var ownedEntries = []string{
	"etcd", "pki", "apiserver", "pods", "ready", "kubeconfig",
	"apiserver.log", "controller-manager.log", "etcd.log", "node.log",
}

func prepareDir(dir string) (string, bool, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "portcullis-testcluster-")
		return d, true, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", false, err
	}
	for _, name := range ownedEntries {
		if err := os.RemoveAll(filepath.Join(abs, name)); err != nil {
			return "", false, err
		}
	}
	return abs, false, nil
}

func run(cfg *config) int {
	began := time.Now()
	dir, temporary, err := prepareDir(cfg.dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "portcullis-testcluster:", err)
		return 1
	}
	if temporary {
		defer os.RemoveAll(dir)
	}
	logs, err := openLogs(dir, cfg.verbose)
	if err != nil {
		fmt.Fprintln(os.Stderr, "portcullis-testcluster:", err)
		return 1
	}
	defer logs.close()

	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()

	cp := &controlPlane{dir: dir, logs: logs}
	defer cp.stop()
	if err := cp.start(ctx, cfg); err != nil {
		if ctx.Err() != nil {
			logs.say("interrupted while starting")
			return 0
		}
		logs.say("start failed: %v (logs in %s)", err, dir)
		return 1
	}
	elapsed := time.Since(began)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	ready := fmt.Sprintf("kubeconfig=%s\nserver=%s\npid=%d\n", kubeconfig, cp.url, os.Getpid())
	if err := os.WriteFile(filepath.Join(dir, "ready"), []byte(ready), 0o644); err != nil {
		logs.say("%v", err)
		return 1
	}
	logs.say("ready in %.1fs (etcd %.1fs, kube-apiserver %.1fs, controllers and node %.1fs); API %s, logs in %s",
		elapsed.Seconds(), cp.etcdTook.Seconds(), cp.apiTook.Seconds(), cp.restTook.Seconds(), cp.url, dir)
	fmt.Printf("portcullis-testcluster ready kubeconfig=%s\n", kubeconfig)

	defer os.Remove(filepath.Join(dir, "ready"))
	select {
	case <-ctx.Done():
		logs.say("stopping")
		stopSignals() // a second signal ends the process at once
		return 0
	case err := <-cp.failed:
		logs.say("a component stopped: %v (logs in %s)", err, dir)
		return 1
	}
}

// controlPlane is the set of running components, stopped in reverse order.
type controlPlane struct {
	dir    string
	logs   *logs
	url    string
	failed chan error

	etcdClose func()
	api       *component
	kcm       *component
	node      *node.Node

	etcdTook, apiTook, restTook time.Duration
}

func (cp *controlPlane) start(ctx context.Context, cfg *config) error {
	cp.failed = make(chan error, 3)
	p, err := generatePKI(filepath.Join(cp.dir, "pki"))
	if err != nil {
		return err
	}

	t := time.Now()
	e, etcdURL, err := startEtcd(filepath.Join(cp.dir, "etcd"), cp.logs.etcdPath)
	if err != nil {
		return err
	}
	cp.etcdClose = e.Close
	go func() {
		if err, ok := <-e.Err(); ok && err != nil {
			cp.failed <- fmt.Errorf("etcd: %w", err)
		}
	}()
	cp.etcdTook = time.Since(t)

	t = time.Now()
	api, url, err := startAPIServer(ctx, p, etcdURL, cp.dir)
	if err != nil {
		return err
	}
	cp.api, cp.url = api, url
	kubeconfig := filepath.Join(cp.dir, "kubeconfig")
	if err := p.writeKubeconfig(kubeconfig, url); err != nil {
		return err
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	restConfig.QPS, restConfig.Burst = 100, 200
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	go func() {
		<-api.done
		if ctx.Err() == nil {
			cp.failed <- api.stoppedWith("kube-apiserver")
		}
	}()
	if err := waitUntilReady(ctx, client, api); err != nil {
		return fmt.Errorf("kube-apiserver not ready: %w", err)
	}
	cp.apiTook = time.Since(t)

	t = time.Now()
	kcm, err := startControllerManager(ctx, p, kubeconfig, cp.logs.kcm)
	if err != nil {
		return err
	}
	cp.kcm = kcm
	go func() {
		<-kcm.done
		if ctx.Err() == nil {
			cp.failed <- kcm.stoppedWith("kube-controller-manager")
		}
	}()
	n, err := node.Start(ctx, node.Config{
		Name: cfg.nodeName, Client: client, Images: cfg.images,
		PodsDir: filepath.Join(cp.dir, "pods"), Log: cp.logs.node,
	})
	if err != nil {
		return err
	}
	cp.node = n
	// The controllers are working once the service-account controller has created the
	// default ServiceAccount and the root-CA publisher the CA ConfigMap of a namespace.
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-cp.failed:
			return false, err
		default:
		}
		if _, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return false, nil
		}
		_, err := client.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("controllers not working: %w", err)
	}
	cp.restTook = time.Since(t)
	return nil
}

// stop ends the node (and its job processes), the controller manager, the API server and etcd,
// waiting a bounded time for each.
func (cp *controlPlane) stop() {
	waitFor := func(c *component, name string, limit time.Duration) {
		if c == nil {
			return
		}
		c.cancel()
		select {
		case <-c.done:
		case <-time.After(limit):
			cp.logs.say("%s did not stop within %s", name, limit)
		}
	}
	if cp.node != nil {
		cp.node.Stop()
	}
	waitFor(cp.kcm, "kube-controller-manager", 5*time.Second)
	waitFor(cp.api, "kube-apiserver", 20*time.Second)
	if cp.etcdClose != nil {
		closed := make(chan struct{})
		go func() {
			cp.etcdClose()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			cp.logs.say("etcd did not stop within 10s")
		}
	}
	klog.Flush()
}
