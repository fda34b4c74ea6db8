package node

import (
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// containerState is what the node knows of one container.
type containerState struct {
	state    corev1.ContainerState
	last     corev1.ContainerState
	ready    bool
	restarts int32
	id       string
}

func (c *containerState) terminated() bool { return c.state.Terminated != nil }

func (c *containerState) setRunning(id string, at time.Time) {
	c.id = id
	c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at)}}
	c.ready = true
}

func (c *containerState) setTerminated(code int32, reason, message string, finished time.Time) {
	started := metav1.NewTime(finished)
	if c.state.Running != nil {
		started = c.state.Running.StartedAt
	}
	c.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode:    code,
		Reason:      reason,
		Message:     message,
		StartedAt:   started,
		FinishedAt:  metav1.NewTime(finished),
		ContainerID: c.id,
	}}
	c.ready = false
}

func (c *containerState) status(spec *corev1.Container) corev1.ContainerStatus {
	started := c.state.Running != nil
	s := corev1.ContainerStatus{
		Name:                 spec.Name,
		Image:                spec.Image,
		Ready:                c.ready,
		Started:              &started,
		RestartCount:         c.restarts,
		State:                c.state,
		LastTerminationState: c.last,
	}
	if c.id != "" {
		s.ContainerID = c.id
		s.ImageID = spec.Image
	}
	if s.State == (corev1.ContainerState{}) {
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	return s
}

// podRun is the node's state of one pod it runs.
type podRun struct {
	key             string
	uid             types.UID
	dir             string
	ip              string
	runToCompletion bool

	mu         sync.Mutex
	started    bool
	phase      corev1.PodPhase
	waiting    string // reason the containers wait for, before start
	waitingMsg string
	inits      []*containerState
	containers []*containerState

	stopOnce sync.Once
	stopCh   chan struct{} // closed when the pod is deleted or the node stops
	done     chan struct{} // closed when the runner of a job pod is finished
	writeMu  sync.Mutex    // one status write at a time
}

func newPodRun(key string, pod *corev1.Pod, dir, ip string) *podRun {
	r := &podRun{
		key:             key,
		uid:             pod.UID,
		dir:             dir,
		ip:              ip,
		runToCompletion: runToCompletion(pod),
		phase:           corev1.PodPending,
		stopCh:          make(chan struct{}),
	}
	for range pod.Spec.InitContainers {
		r.inits = append(r.inits, &containerState{})
	}
	for range pod.Spec.Containers {
		r.containers = append(r.containers, &containerState{})
	}
	if r.runToCompletion {
		r.done = make(chan struct{})
	}
	return r
}

func (r *podRun) kill() { r.stopOnce.Do(func() { close(r.stopCh) }) }

func (r *podRun) stopped() bool {
	select {
	case <-r.stopCh:
		return true
	default:
		return false
	}
}

func (r *podRun) isStarted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started
}

func (r *podRun) markStarted() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started, r.waiting, r.waitingMsg = true, "", ""
}

// setWaiting records why the containers cannot start; it reports whether that changed.
func (r *podRun) setWaiting(reason, message string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := r.waiting != reason || r.waitingMsg != message
	r.waiting, r.waitingMsg = reason, message
	for _, c := range append(append([]*containerState{}, r.inits...), r.containers...) {
		c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
	}
	return changed
}

func (r *podRun) containerID(name string, restarts int32) string {
	return fmt.Sprintf("testcluster://%s/%s/%d", r.uid, name, restarts)
}

// simulateRunning reports every container of a long-running pod running and ready (init
// containers completed).
func (r *podRun) simulateRunning(pod *corev1.Pod, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phase = corev1.PodRunning
	for i, c := range r.inits {
		c.id = r.containerID(pod.Spec.InitContainers[i].Name, 0)
		c.setTerminated(0, "Completed", "", at)
	}
	for i, c := range r.containers {
		c.setRunning(r.containerID(pod.Spec.Containers[i].Name, 0), at)
	}
}

// simulateStopped ends the simulated containers of a deleted long-running pod: they exit 0 on
// SIGTERM, so the pod ends Succeeded. It reports whether anything changed.
func (r *podRun) simulateStopped(at time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runToCompletion || r.phase != corev1.PodRunning {
		return false
	}
	for _, c := range r.containers {
		if !c.terminated() {
			c.setTerminated(0, "Completed", "", at)
		}
	}
	r.phase = corev1.PodSucceeded
	return true
}

func setCondition(st *corev1.PodStatus, t corev1.PodConditionType, s corev1.ConditionStatus, reason, message string, now metav1.Time) {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status != s {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message = s, reason, message
		return
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{
		Type: t, Status: s, Reason: reason, Message: message, LastTransitionTime: now,
	})
}

func boolCondition(ok bool) corev1.ConditionStatus {
	if ok {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

// status is the pod status the run stands for, on top of the pod's current one.
func (r *podRun) status(pod *corev1.Pod, now metav1.Time) corev1.PodStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := *pod.Status.DeepCopy()
	st.Phase = r.phase
	st.HostIP, st.HostIPs = nodeIP, []corev1.HostIP{{IP: nodeIP}}
	st.PodIP, st.PodIPs = r.ip, []corev1.PodIP{{IP: r.ip}}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	st.InitContainerStatuses = nil
	initialized := true
	for i := range pod.Spec.InitContainers {
		spec := &pod.Spec.InitContainers[i]
		c := r.inits[i]
		st.InitContainerStatuses = append(st.InitContainerStatuses, c.status(spec))
		sidecar := spec.RestartPolicy != nil && *spec.RestartPolicy == corev1.ContainerRestartPolicyAlways
		done := c.terminated() && c.state.Terminated.ExitCode == 0
		if !(done || (sidecar && c.state.Running != nil)) {
			initialized = false
		}
	}
	st.ContainerStatuses = nil
	var unready []string
	for i := range pod.Spec.Containers {
		spec := &pod.Spec.Containers[i]
		st.ContainerStatuses = append(st.ContainerStatuses, r.containers[i].status(spec))
		if !r.containers[i].ready {
			unready = append(unready, spec.Name)
		}
	}
	ready := r.phase == corev1.PodRunning && len(unready) == 0
	reason, message := "", ""
	switch {
	case isTerminal(r.phase):
		reason = "PodCompleted"
	case !ready:
		reason, message = "ContainersNotReady", fmt.Sprintf("containers with unready status: %v", unready)
	}
	setCondition(&st, corev1.PodScheduled, corev1.ConditionTrue, "", "", now)
	setCondition(&st, corev1.PodReadyToStartContainers, boolCondition(r.waiting != "ContainerCreating"), "", "", now)
	initReason := ""
	if !initialized {
		initReason = "ContainersNotInitialized"
	} else if isTerminal(r.phase) {
		initReason = "PodCompleted"
	}
	setCondition(&st, corev1.PodInitialized, boolCondition(initialized), initReason, "", now)
	setCondition(&st, corev1.ContainersReady, boolCondition(ready), reason, message, now)
	setCondition(&st, corev1.PodReady, boolCondition(ready), reason, message, now)
	return st
}
