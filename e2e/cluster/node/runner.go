package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

const (
	// The kubelet keeps at most this much of a termination message file...
	maxTerminationMessage = 4096
	// ...and takes at most this much of the log tail for FallbackToLogsOnError.
	maxFallbackLines = 80
	maxFallbackBytes = 2048
	// The environment variable that tells a process where its termination message goes here,
	// since the terminationMessagePath itself cannot be mounted.
	terminationMessageEnv = "TERMINATION_MESSAGE_PATH"
)

// containerPlan is how one container of a pod is started on this node.
type containerPlan struct {
	name     string
	image    string
	binary   string // the mapped executable; "" when the image has none (simulated)
	args     []string
	env      []string
	workDir  string
	logPath  string
	termPath string
	policy   corev1.TerminationMessagePolicy
	sidecar  bool
}

// prepare resolves everything a pod's containers need and writes its volumes under the run's
// directory. A *configError means: not yet (a missing Secret, ConfigMap, key, ...).
func (n *Node) prepare(ctx context.Context, pod *corev1.Pod, run *podRun) (inits, mains []*containerPlan, err error) {
	// The downward API sees the addresses the pod is about to get.
	view := pod.DeepCopy()
	view.Status.HostIP, view.Status.HostIPs = nodeIP, []corev1.HostIP{{IP: nodeIP}}
	view.Status.PodIP, view.Status.PodIPs = run.ip, []corev1.PodIP{{IP: run.ip}}

	volumeDirs := map[string]string{}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		files, supported, err := volumeFiles(ctx, n.src, view, v)
		if err != nil {
			return nil, nil, volumeError(v.Name, err)
		}
		dir := filepath.Join(run.dir, "volumes", v.Name)
		if err := writeVolume(dir, files); err != nil {
			return nil, nil, err
		}
		if !supported {
			n.log.Printf("pod %s: volume %s: this kind is not materialised; an empty directory stands in", run.key, v.Name)
		}
		volumeDirs[v.Name] = dir
	}
	plan := func(c *corev1.Container) (*containerPlan, error) {
		return n.planContainer(ctx, view, c, run, volumeDirs)
	}
	for i := range pod.Spec.InitContainers {
		p, err := plan(&pod.Spec.InitContainers[i])
		if err != nil {
			return nil, nil, err
		}
		rp := pod.Spec.InitContainers[i].RestartPolicy
		p.sidecar = rp != nil && *rp == corev1.ContainerRestartPolicyAlways
		inits = append(inits, p)
	}
	for i := range pod.Spec.Containers {
		p, err := plan(&pod.Spec.Containers[i])
		if err != nil {
			return nil, nil, err
		}
		mains = append(mains, p)
	}
	return inits, mains, nil
}

func writeVolume(dir string, files []volumeFile) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		target := filepath.Join(dir, filepath.FromSlash(f.path))
		if !strings.HasPrefix(target, dir+string(filepath.Separator)) {
			return fmt.Errorf("volume file %q leaves its volume", f.path)
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		// The owner (this process) can always read what it wrote.
		if err := os.WriteFile(target, f.data, os.FileMode(f.mode&0o777)|0o400); err != nil {
			return err
		}
	}
	return nil
}

// mountMappings maps each of the container's mount paths (and its termination message path)
// to the directory (or file) standing in for it.
func mountMappings(c *corev1.Container, volumeDirs map[string]string, e *env, termPath string) ([]pathMapping, error) {
	var mappings []pathMapping
	for _, m := range c.VolumeMounts {
		dir, ok := volumeDirs[m.Name]
		if !ok {
			return nil, &configError{reason: "CreateContainerConfigError", message: fmt.Sprintf("no volume %q for mount %s", m.Name, m.MountPath)}
		}
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub = expansion.Expand(m.SubPathExpr, expansion.MappingFuncFor(e.values))
		}
		to := dir
		if sub != "" {
			to = filepath.Join(dir, filepath.FromSlash(sub))
		}
		mappings = append(mappings, pathMapping{from: m.MountPath, to: to})
	}
	if c.TerminationMessagePath != "" {
		mappings = append(mappings, pathMapping{from: c.TerminationMessagePath, to: termPath})
	}
	sortMappings(mappings)
	return mappings, nil
}

// containerArgv is what runs in place of the image: the mapped executable stands for the
// image's entrypoint and for command[0]; command[1:] and args follow.
func containerArgv(command, args []string) []string {
	var argv []string
	if len(command) > 1 {
		argv = append(argv, command[1:]...)
	}
	return append(argv, args...)
}

func (n *Node) planContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, run *podRun, volumeDirs map[string]string) (*containerPlan, error) {
	e, err := resolveEnv(ctx, n.src, pod, c)
	if err != nil {
		return nil, err
	}
	p := &containerPlan{
		name:     c.Name,
		image:    c.Image,
		logPath:  filepath.Join(run.dir, c.Name+".log"),
		termPath: filepath.Join(run.dir, c.Name+".termination-log"),
		policy:   c.TerminationMessagePolicy,
	}
	mappings, err := mountMappings(c, volumeDirs, e, p.termPath)
	if err != nil {
		return nil, err
	}
	command, args := expandCommand(c, e)
	for _, a := range containerArgv(command, args) {
		p.args = append(p.args, translateArg(a, mappings))
	}

	// What a container runtime puts in every container, then the container's own variables
	// (mount paths translated), then where the termination message goes.
	full := newEnv()
	full.set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	full.set("HOSTNAME", pod.Name)
	full.set("HOME", run.dir)
	for _, m := range mappings {
		if m.from == "/tmp" {
			full.set("TMPDIR", m.to)
		}
	}
	for _, name := range e.names {
		v, _ := translatePath(e.values[name], mappings)
		full.set(name, v)
	}
	if _, ok := e.values[terminationMessageEnv]; !ok && c.TerminationMessagePath != "" {
		full.set(terminationMessageEnv, p.termPath)
	}
	p.env = full.list()

	p.workDir = run.dir
	if c.WorkingDir != "" {
		if dir, ok := translatePath(c.WorkingDir, mappings); ok {
			p.workDir = dir
		}
	}
	if binary, ok := n.images.lookup(c.Image); ok && run.runToCompletion {
		p.binary = binary
	}
	if err := os.MkdirAll(run.dir, 0o755); err != nil {
		return nil, err
	}
	return p, nil
}

// runPod runs a run-to-completion pod: init containers one after the other, then the
// containers together; the pod ends Succeeded when all exit 0, Failed otherwise.
func (n *Node) runPod(pod *corev1.Pod, run *podRun, inits, mains []*containerPlan) {
	defer func() {
		close(run.done)
		n.queue.Add(run.key) // a deletion waits for this
	}()
	restartOnFailure := pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure
	grace := maxKillGrace
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil && time.Duration(*g)*time.Second < grace {
		grace = time.Duration(*g) * time.Second
	}
	failed := false
	for i, p := range inits {
		if p.sidecar {
			// Sidecars are not run; they are reported running so the pod can proceed.
			run.mu.Lock()
			run.inits[i].setRunning(run.containerID(p.name, 0), time.Now())
			run.mu.Unlock()
			continue
		}
		if code := n.runContainer(run, p, run.inits[i], restartOnFailure, grace); code != 0 {
			failed = true
			break
		}
	}
	if !failed && !run.stopped() {
		run.mu.Lock()
		run.phase = corev1.PodRunning
		run.mu.Unlock()
		var wg sync.WaitGroup
		codes := make([]int32, len(mains))
		for i, p := range mains {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = n.runContainer(run, p, run.containers[i], restartOnFailure, grace)
			}()
		}
		wg.Wait()
		for _, c := range codes {
			failed = failed || c != 0
		}
	}
	run.mu.Lock()
	for _, c := range run.containers {
		if !c.terminated() {
			// Never started (an init container failed): the kubelet leaves them waiting.
			c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
		}
	}
	for _, c := range run.inits {
		if c.state.Running != nil { // sidecars stop with the pod
			c.setTerminated(0, "Completed", "", time.Now())
		}
	}
	if failed || run.stopped() && anyUnfinished(run.containers) {
		run.phase = corev1.PodFailed
	} else {
		run.phase = corev1.PodSucceeded
	}
	phase := run.phase
	run.mu.Unlock()
	n.report(run)
	n.log.Printf("pod %s: %s", run.key, phase)
}

func anyUnfinished(cs []*containerState) bool {
	for _, c := range cs {
		if !c.terminated() || c.state.Terminated.ExitCode != 0 {
			return true
		}
	}
	return false
}

// runContainer runs one container until it ends, restarting it on failure when the pod says
// so (with the kubelet's doubling back-off, capped at 10 s here). It returns the last exit code.
func (n *Node) runContainer(run *podRun, p *containerPlan, state *containerState, restartOnFailure bool, grace time.Duration) int32 {
	backoff := time.Second
	for {
		run.mu.Lock()
		id := run.containerID(p.name, state.restarts)
		state.setRunning(id, time.Now())
		run.mu.Unlock()
		n.report(run)

		code, reason, message := n.execContainer(run, p, grace)

		run.mu.Lock()
		state.setTerminated(code, reason, message, time.Now())
		again := code != 0 && restartOnFailure && !run.stopped()
		if again {
			state.last = state.state
			state.restarts++
			state.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason:  "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", backoff, p.name, run.key),
			}}
		}
		run.mu.Unlock()
		if !again {
			return code
		}
		n.report(run)
		select {
		case <-run.stopCh:
			run.mu.Lock()
			state.state = state.last
			state.last = corev1.ContainerState{}
			run.mu.Unlock()
			return code
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// execContainer runs the container's process (or, without a mapped executable, stands in for
// it) and returns its exit code, the kubelet's reason and the termination message.
func (n *Node) execContainer(run *podRun, p *containerPlan, grace time.Duration) (int32, string, string) {
	if p.binary == "" {
		n.log.Printf("pod %s container %s: not run: no --image-binary for image %s; reported as exited 0", run.key, p.name, p.image)
		select {
		case <-time.After(simulatedRun):
			return 0, "Completed", ""
		case <-run.stopCh:
			return 137, "Error", ""
		}
	}
	// The kubelet mounts a fresh, empty file at the termination message path for each start.
	if err := os.WriteFile(p.termPath, nil, 0o666); err != nil {
		return 128, "StartError", err.Error()
	}
	out, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 128, "StartError", err.Error()
	}
	defer out.Close()
	cmd := exec.Command(p.binary, p.args...)
	cmd.Env, cmd.Dir = p.env, p.workDir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		n.log.Printf("pod %s container %s: cannot start %s: %v", run.key, p.name, p.binary, err)
		return 128, "StartError", err.Error()
	}
	n.log.Printf("pod %s container %s: running %s %s (pid %d, output %s)", run.key, p.name, p.binary, strings.Join(p.args, " "), cmd.Process.Pid, p.logPath)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-run.stopCh:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(grace):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	// Whatever the process left running in its group goes with it, as with a container.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	code := exitCode(cmd.ProcessState)
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	message := terminationMessage(p.termPath, p.logPath, p.policy, code)
	n.log.Printf("pod %s container %s: exited %d after %s", run.key, p.name, code, time.Since(began).Round(time.Millisecond))
	return code, reason, message
}

// exitCode is the container exit code: the process's, or 128+signal when a signal ended it.
func exitCode(ps *os.ProcessState) int32 {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(ps.ExitCode())
}

// terminationMessage is what the kubelet puts in state.terminated.message: the termination
// message file (at most 4096 bytes), or with FallbackToLogsOnError and a failure, the tail of
// the output when that file is empty.
func terminationMessage(termPath, logPath string, policy corev1.TerminationMessagePolicy, code int32) string {
	msg, _ := readAtMost(termPath, maxTerminationMessage)
	if len(msg) == 0 && policy == corev1.TerminationMessageFallbackToLogsOnError && code != 0 {
		if log, err := os.ReadFile(logPath); err == nil {
			msg = tail(log, maxFallbackLines, maxFallbackBytes)
		}
	}
	return string(msg)
}

func readAtMost(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// tail is the last lines of data, and at most maxBytes of them.
func tail(data []byte, lines, maxBytes int) []byte {
	data = bytes.TrimRight(data, "\n")
	start := len(data)
	for i := 0; i < lines && start > 0; i++ {
		nl := bytes.LastIndexByte(data[:start], '\n')
		start = nl
		if nl < 0 {
			start = 0
			break
		}
	}
	if start > 0 {
		start++ // past the newline
	}
	out := data[start:]
	if len(out) > maxBytes {
		out = out[len(out)-maxBytes:]
	}
	return out
}
