package node

// The simulated node: a Node object and the part of a kubelet (plus the scheduler's binding)
// that the control plane's controllers rely on. Pods are bound to the node, their volumes and
// environment resolved as a kubelet would, and then:
//   - long-running pods (restartPolicy Always: Deployments, ReplicaSets) are reported Running
//     and Ready without running anything;
//   - run-to-completion pods (restartPolicy Never/OnFailure: Jobs) run their container for real
//     when its image is mapped to a local executable (--image-binary), else they are reported
//     Succeeded after a moment;
//   - deleted pods are stopped, reported terminal and removed (delete with grace period 0).

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
)

const (
	nodeIP = "127.0.0.1"
	// How often a pod whose volumes or environment cannot be resolved yet is retried.
	configRetry = 2 * time.Second
	// How long a run-to-completion pod whose image has no local executable "runs".
	simulatedRun = 500 * time.Millisecond
	// Longest wait between SIGTERM and SIGKILL of a job process (the pod's grace period if
	// shorter): tests should not wait for 30 s grace periods.
	maxKillGrace = 5 * time.Second
)

// Node is a running simulated node.
type Node struct {
	name     string
	client   kubernetes.Interface
	src      sources
	images   ImageBinaries
	podsDir  string
	log      *log.Logger
	k8sVer   string
	ctx      context.Context
	cancel   context.CancelFunc
	lister   corelisters.PodLister
	queue    workqueue.TypedRateLimitingInterface[string]
	workers  sync.WaitGroup
	mu       sync.Mutex
	runs     map[string]*podRun
	nextIP   uint32
	runners  sync.WaitGroup
	stopOnce sync.Once
}

// apiSources reads a pod's references from the API server.
type apiSources struct{ client kubernetes.Interface }

func (s apiSources) secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	return s.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

func (s apiSources) configMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	return s.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (s apiSources) token(ctx context.Context, pod *corev1.Pod, audience string, expiration int64) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &expiration,
		BoundObjectRef: &authenticationv1.BoundObjectReference{
			Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID,
		},
	}}
	if audience != "" {
		req.Spec.Audiences = []string{audience}
	}
	out, err := s.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return out.Status.Token, nil
}

// Config is what a node is started with.
type Config struct {
	// Name of the Node object.
	Name   string
	Client kubernetes.Interface
	// Executables standing in for images in run-to-completion pods.
	Images ImageBinaries
	// Where each pod gets a directory: volumes, output, termination message.
	PodsDir string
	Log     *log.Logger
}

// Start registers the node and starts its pod loop; it returns once the node is Ready and its
// pod cache is synced.
func Start(parent context.Context, cfg Config) (*Node, error) {
	ctx, cancel := context.WithCancel(parent)
	name, client := cfg.Name, cfg.Client
	n := &Node{
		name:    name,
		client:  client,
		src:     apiSources{client: client},
		images:  cfg.Images,
		podsDir: cfg.PodsDir,
		log:     cfg.Log,
		k8sVer:  kubernetesVersion(),
		ctx:     ctx,
		cancel:  cancel,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "node"}),
		runs: map[string]*podRun{},
	}
	if err := n.register(ctx); err != nil {
		cancel()
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	informer := factory.Core().V1().Pods()
	n.lister = informer.Lister()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			n.queue.Add(key)
		}
	}
	if _, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		cancel()
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.Informer().HasSynced) {
		cancel()
		return nil, errors.New("node: pod cache did not sync")
	}
	for i := 0; i < 4; i++ {
		n.workers.Add(1)
		go func() {
			defer n.workers.Done()
			for n.processNext() {
			}
		}()
	}
	go func() {
		<-ctx.Done()
		n.queue.ShutDown()
	}()
	n.log.Printf("node %s registered and Ready", name)
	return n, nil
}

// Stop kills every job process and stops the pod loop.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		n.cancel()
		n.workers.Wait() // no pod is being started any more
		n.mu.Lock()
		for _, run := range n.runs {
			run.kill()
		}
		n.mu.Unlock()
		n.runners.Wait()
		n.log.Printf("node stopped")
	})
}

func (n *Node) nodeStatus(now metav1.Time) corev1.NodeStatus {
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{
			Type: t, Status: s, Reason: reason, Message: msg,
			LastHeartbeatTime: now, LastTransitionTime: now,
		}
	}
	return corev1.NodeStatus{
		Capacity:    nodeAllocatable.DeepCopy(),
		Allocatable: nodeAllocatable.DeepCopy(),
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "simulated by portcullis-testcluster"),
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: nodeIP},
			{Type: corev1.NodeHostName, Address: n.name},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          n.k8sVer,
			KubeProxyVersion:        "",
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
			ContainerRuntimeVersion: "portcullis-testcluster://" + n.k8sVer,
		},
	}
}

func (n *Node) register(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: n.name,
		Labels: map[string]string{
			"kubernetes.io/hostname": n.name,
			"kubernetes.io/os":       runtime.GOOS,
			"kubernetes.io/arch":     runtime.GOARCH,
		},
	}}
	created, err := n.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = n.client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("node: register: %w", err)
	}
	created.Status = n.nodeStatus(metav1.Now())
	if _, err := n.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node: status: %w", err)
	}
	return nil
}

func (n *Node) processNext() bool {
	key, quit := n.queue.Get()
	if quit {
		return false
	}
	defer n.queue.Done(key)
	if err := n.sync(key); err != nil {
		if n.ctx.Err() == nil {
			n.log.Printf("pod %s: %v (retrying)", key, err)
		}
		n.queue.AddRateLimited(key)
		return true
	}
	n.queue.Forget(key)
	return true
}

func isTerminal(p corev1.PodPhase) bool {
	return p == corev1.PodSucceeded || p == corev1.PodFailed
}

// runToCompletion: pods that end (Jobs): their containers are not restarted after success.
func runToCompletion(pod *corev1.Pod) bool {
	return pod.Spec.RestartPolicy == corev1.RestartPolicyNever || pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure
}

func (n *Node) sync(key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := n.lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		n.forget(key, "")
		return nil
	}
	if err != nil {
		return err
	}
	n.forget(key, pod.UID) // a pod of the same name from before is gone

	if pod.DeletionTimestamp != nil {
		return n.terminate(pod, key)
	}
	if pod.Spec.NodeName == "" {
		return n.bind(pod)
	}
	if pod.Spec.NodeName != n.name || isTerminal(pod.Status.Phase) {
		return nil
	}

	n.mu.Lock()
	run := n.runs[key]
	if run == nil {
		n.nextIP++
		run = newPodRun(key, pod, filepath.Join(n.podsDir, fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, string(pod.UID)[:8])),
			fmt.Sprintf("10.244.%d.%d", (n.nextIP/250)%256, n.nextIP%250+2))
		n.runs[key] = run
	}
	n.mu.Unlock()
	if run.isStarted() {
		return nil
	}

	inits, mains, err := n.prepare(n.ctx, pod, run)
	if err != nil {
		var ce *configError
		if !errors.As(err, &ce) {
			return err
		}
		if run.setWaiting(ce.reason, ce.message) {
			n.log.Printf("pod %s: %s: %s", key, ce.reason, ce.message)
			n.report(run)
		}
		n.queue.AddAfter(key, configRetry)
		return nil
	}
	run.markStarted()
	if runToCompletion(pod) {
		n.runners.Add(1)
		go func() {
			defer n.runners.Done()
			n.runPod(pod, run, inits, mains)
		}()
		return nil
	}
	run.simulateRunning(pod, time.Now())
	n.report(run)
	n.log.Printf("pod %s: Running and Ready (simulated: %s)", key, images(pod))
	return nil
}

func images(pod *corev1.Pod) string {
	out := ""
	for i, c := range pod.Spec.Containers {
		if i > 0 {
			out += ", "
		}
		out += c.Image
	}
	return out
}

// forget drops the state of a pod that no longer exists (any UID other than keep).
func (n *Node) forget(key string, keep types.UID) {
	n.mu.Lock()
	run := n.runs[key]
	if run == nil || run.uid == keep {
		n.mu.Unlock()
		return
	}
	delete(n.runs, key)
	n.mu.Unlock()
	run.kill()
	if !run.runToCompletion {
		// Long-running pods keep nothing worth reading; job pods keep their output.
		_ = os.RemoveAll(run.dir)
	}
}

// bind does the scheduler's part: every schedulable pod goes to this node.
func (n *Node) bind(pod *corev1.Pod) error {
	if s := pod.Spec.SchedulerName; s != "" && s != corev1.DefaultSchedulerName {
		return nil
	}
	if len(pod.Spec.SchedulingGates) > 0 {
		return nil
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: n.name},
	}
	err := n.client.CoreV1().Pods(pod.Namespace).Bind(n.ctx, binding, metav1.CreateOptions{})
	if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		return fmt.Errorf("bind: %w", err)
	}
	if err == nil {
		n.log.Printf("pod %s/%s: bound to %s", pod.Namespace, pod.Name, n.name)
	}
	return nil
}

// terminate handles a deleted pod of this node as the kubelet does: stop its containers,
// report the terminal status, then remove the object (grace period 0).
func (n *Node) terminate(pod *corev1.Pod, key string) error {
	if pod.Spec.NodeName != n.name {
		return nil // unbound pods are removed by the API server itself
	}
	n.mu.Lock()
	run := n.runs[key]
	n.mu.Unlock()
	if run != nil && run.uid == pod.UID {
		run.kill()
		if run.done != nil && run.isStarted() {
			select {
			case <-run.done:
			default:
				return nil // the runner re-queues the pod when its processes are gone
			}
		}
		if !isTerminal(pod.Status.Phase) && run.simulateStopped(time.Now()) {
			n.report(run)
		}
	}
	if g := pod.DeletionGracePeriodSeconds; g != nil && *g == 0 {
		return nil // already deleted for good; waiting for finalizers
	}
	uid := pod.UID
	err := n.client.CoreV1().Pods(pod.Namespace).Delete(n.ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete: %w", err)
	}
	n.log.Printf("pod %s: deleted", key)
	return nil
}

// report writes the run's status to the pod (retrying on conflicts). A pod that is gone or
// already terminal is left alone.
func (n *Node) report(run *podRun) {
	run.writeMu.Lock()
	defer run.writeMu.Unlock()
	ns, name, _ := cache.SplitMetaNamespaceKey(run.key)
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		pod, err := n.client.CoreV1().Pods(ns).Get(n.ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pod.UID != run.uid || isTerminal(pod.Status.Phase) {
			return nil
		}
		pod.Status = run.status(pod, metav1.Now())
		_, err = n.client.CoreV1().Pods(ns).UpdateStatus(n.ctx, pod, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) && n.ctx.Err() == nil {
		n.log.Printf("pod %s: status: %v", run.key, err)
	}
}

// kubernetesVersion is the k8s.io/kubernetes module version this binary was built from.
func kubernetesVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "k8s.io/kubernetes" {
				return dep.Version
			}
		}
	}
	return "v1.33"
}
