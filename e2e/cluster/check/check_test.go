package check

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// The image the cluster under test maps to /bin/sh (--image-binary example.test/sh=/bin/sh).
const shellImage = "example.test/sh:1"

type env struct {
	t       *testing.T
	ctx     context.Context
	config  *rest.Config
	client  kubernetes.Interface
	ns      string
	runDir  string
	crdsDir string
}

func setup(t *testing.T) *env {
	kubeconfig := os.Getenv("PORTCULLIS_TESTCLUSTER_KUBECONFIG")
	if kubeconfig == "" {
		t.Skip("PORTCULLIS_TESTCLUSTER_KUBECONFIG is not set: no cluster to check")
	}
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	e := &env{
		t: t, ctx: ctx, config: config, client: client,
		ns:      fmt.Sprintf("check-%d", time.Now().UnixNano()%1_000_000),
		runDir:  os.Getenv("PORTCULLIS_TESTCLUSTER_DIR"),
		crdsDir: filepath.Join("..", "..", "..", "crds", "yaml"),
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Pods need the namespace's default ServiceAccount (ServiceAccount admission).
	e.eventually("default ServiceAccount", 20*time.Second, func() (bool, error) {
		_, err := client.CoreV1().ServiceAccounts(e.ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	return e
}

func (e *env) eventually(what string, timeout time.Duration, cond func() (bool, error)) time.Duration {
	e.t.Helper()
	began := time.Now()
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond()
	})
	if err != nil {
		e.t.Fatalf("%s: not within %s: %v", what, timeout, err)
	}
	took := time.Since(began)
	e.t.Logf("%s: %s", what, took.Round(10*time.Millisecond))
	return took
}

func labels(app string) map[string]string { return map[string]string{"app": app} }

func TestCluster(t *testing.T) {
	e := setup(t)
	t.Run("DeploymentReadyAndGarbageCollected", e.deployment)
	t.Run("JobRunsForReal", e.jobs)
	t.Run("TokenRequestAndRBAC", e.rbac)
	t.Run("CRDs", e.crds)
	t.Run("NamespaceTerminates", e.namespaceDeletion)
}

func (e *env) deployment(t *testing.T) {
	e.t = t
	replicas := int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels("web")},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels("web")},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: "ghcr.io/portcullis-dev/portcullis:0.1.0",
					Command: []string{"/usr/local/bin/portcullis-authserver"}, Args: []string{"serve"},
				}}},
			},
		},
	}
	deployments := e.client.AppsV1().Deployments(e.ns)
	if _, err := deployments.Create(e.ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("Deployment readyReplicas=2 and Available", 30*time.Second, func() (bool, error) {
		d, err := deployments.Get(e.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
				return d.Status.ReadyReplicas == 2 && d.Status.AvailableReplicas == 2, nil
			}
		}
		return false, nil
	})
	// A template change rolls the pods: the old ReplicaSet's pods are deleted for real.
	patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"rev":"2"}}}}}`)
	if _, err := deployments.Patch(e.ctx, "web", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("rollout: 2 updated ready replicas, old pods gone", 30*time.Second, func() (bool, error) {
		d, err := deployments.Get(e.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pods, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err
		}
		return d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == 2 &&
			d.Status.ReadyReplicas == 2 && d.Status.Replicas == 2 && len(pods.Items) == 2, nil
	})
	background := metav1.DeletePropagationBackground
	if err := deployments.Delete(e.ctx, "web", metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
		t.Fatal(err)
	}
	e.eventually("ReplicaSet and pods garbage-collected", 30*time.Second, func() (bool, error) {
		rs, err := e.client.AppsV1().ReplicaSets(e.ns).List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		pods, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err
		}
		return len(rs.Items) == 0 && len(pods.Items) == 0, nil
	})
}

func (e *env) job(name, image string, args []string, policy corev1.TerminationMessagePolicy) *batchv1.Job {
	zero := int32(0)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: &zero,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(name)},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name: "main", Image: image, Args: args,
						TerminationMessagePolicy: policy,
						Env: []corev1.EnvVar{
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
							{Name: "GREETING_FILE", Value: "/etc/greeting/text"},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "greeting", MountPath: "/etc/greeting"}},
					}},
					Volumes: []corev1.Volume{{Name: "greeting", VolumeSource: corev1.VolumeSource{
						ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "greeting"}},
					}}},
				},
			},
		},
	}
}

// jobPod waits for the Job's condition and returns its pod.
func (e *env) jobPod(name string, condition batchv1.JobConditionType) *corev1.Pod {
	e.eventually("Job "+name+" "+string(condition), 30*time.Second, func() (bool, error) {
		j, err := e.client.BatchV1().Jobs(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range j.Status.Conditions {
			if c.Type == condition && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	pods, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil || len(pods.Items) != 1 {
		e.t.Fatalf("pods of Job %s: %v %d", name, err, len(pods.Items))
	}
	return &pods.Items[0]
}

func terminated(t *testing.T, pod *corev1.Pod) *corev1.ContainerStateTerminated {
	t.Helper()
	if len(pod.Status.ContainerStatuses) != 1 || pod.Status.ContainerStatuses[0].State.Terminated == nil {
		t.Fatalf("pod %s: container not terminated: %+v", pod.Name, pod.Status.ContainerStatuses)
	}
	return pod.Status.ContainerStatuses[0].State.Terminated
}

func (e *env) jobs(t *testing.T) {
	e.t = t
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "greeting"}, Data: map[string]string{"text": "hello"}}
	if _, err := e.client.CoreV1().ConfigMaps(e.ns).Create(e.ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	jobs := e.client.BatchV1().Jobs(e.ns)

	// Runs /bin/sh: the mounted ConfigMap is read through the translated path in the
	// environment; the message goes to the file TERMINATION_MESSAGE_PATH names (a shell script
	// is one argument: paths inside it are not translated).
	ok := e.job("ok", shellImage, []string{"-c",
		`echo "$(cat $GREETING_FILE) from $POD_NAME" > "$TERMINATION_MESSAGE_PATH"; echo output of $POD_NAME`}, "")
	if _, err := jobs.Create(e.ctx, ok, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := e.jobPod("ok", batchv1.JobComplete)
	st := terminated(t, pod)
	if pod.Status.Phase != corev1.PodSucceeded || st.ExitCode != 0 || st.Message != "hello from "+pod.Name+"\n" {
		t.Fatalf("ok: phase %s, exit %d, message %q", pod.Status.Phase, st.ExitCode, st.Message)
	}
	t.Logf("ok: Succeeded, message %q", st.Message)
	if e.runDir != "" {
		dir := filepath.Join(e.runDir, "pods", fmt.Sprintf("%s_%s_%s", e.ns, pod.Name, string(pod.UID)[:8]))
		out, err := os.ReadFile(filepath.Join(dir, "main.log"))
		if err != nil || string(out) != "output of "+pod.Name+"\n" {
			t.Fatalf("output: %q %v", out, err)
		}
	}

	fail := e.job("fail", shellImage, []string{"-c", "echo starting; echo boom >&2; exit 3"},
		corev1.TerminationMessageFallbackToLogsOnError)
	if _, err := jobs.Create(e.ctx, fail, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod = e.jobPod("fail", batchv1.JobFailed)
	st = terminated(t, pod)
	if pod.Status.Phase != corev1.PodFailed || st.ExitCode != 3 || st.Message != "starting\nboom" {
		t.Fatalf("fail: phase %s, exit %d, message %q", pod.Status.Phase, st.ExitCode, st.Message)
	}
	t.Logf("fail: Failed, exit 3, message from the log %q", st.Message)

	unmapped := e.job("unmapped", "example.test/not-mapped:1", nil, "")
	if _, err := jobs.Create(e.ctx, unmapped, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.jobPod("unmapped", batchv1.JobComplete)

	// A missing Secret keeps the pod waiting as the kubelet does.
	missing := e.job("missing", shellImage, []string{"-c", "true"}, "")
	missing.Spec.Template.Spec.Containers[0].Env = append(missing.Spec.Template.Spec.Containers[0].Env, corev1.EnvVar{
		Name: "DATABASE_URL", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "url"}},
	})
	if _, err := jobs.Create(e.ctx, missing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("pod waiting with CreateContainerConfigError", 20*time.Second, func() (bool, error) {
		pods, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: "app=missing"})
		if err != nil || len(pods.Items) == 0 || len(pods.Items[0].Status.ContainerStatuses) == 0 {
			return false, err
		}
		w := pods.Items[0].Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "CreateContainerConfigError", nil
	})
	// A pod that never started is deleted all the same.
	stuck := missing.DeepCopy()
	stuck.Name, stuck.Spec.Template.Labels = "stuck", labels("stuck")
	stuck.Spec.Template.Spec.Containers[0].Env[2].ValueFrom.SecretKeyRef.Name = "never"
	if _, err := jobs.Create(e.ctx, stuck, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("stuck pod waiting", 20*time.Second, func() (bool, error) {
		pods, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: "app=stuck"})
		return err == nil && len(pods.Items) == 1 && len(pods.Items[0].Status.ContainerStatuses) == 1 &&
			pods.Items[0].Status.ContainerStatuses[0].State.Waiting != nil, err
	})
	foreground := metav1.DeletePropagationForeground
	if err := jobs.Delete(e.ctx, "stuck", metav1.DeleteOptions{PropagationPolicy: &foreground}); err != nil {
		t.Fatal(err)
	}
	e.eventually("stuck Job and pod gone (foreground deletion)", 20*time.Second, func() (bool, error) {
		pods, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: "app=stuck"})
		_, jerr := jobs.Get(e.ctx, "stuck", metav1.GetOptions{})
		return err == nil && len(pods.Items) == 0 && apierrors.IsNotFound(jerr), nil
	})

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"url": "postgres://x"}}
	if _, err := e.client.CoreV1().Secrets(e.ns).Create(e.ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.jobPod("missing", batchv1.JobComplete)

	// OnFailure: the failed container is restarted in place (the marker lives in an emptyDir,
	// reached through the translated env value).
	retry := e.job("retry", shellImage, []string{"-c", `if [ -f "$MARK" ]; then exit 0; fi; touch "$MARK"; exit 1`}, "")
	two := int32(2)
	retry.Spec.BackoffLimit = &two
	retry.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	c := &retry.Spec.Template.Spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: "MARK", Value: "/scratch/mark"})
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "scratch", MountPath: "/scratch"})
	retry.Spec.Template.Spec.Volumes = append(retry.Spec.Template.Spec.Volumes, corev1.Volume{
		Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	if _, err := jobs.Create(e.ctx, retry, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod = e.jobPod("retry", batchv1.JobComplete)
	if cs := pod.Status.ContainerStatuses[0]; cs.RestartCount != 1 || cs.LastTerminationState.Terminated == nil ||
		cs.LastTerminationState.Terminated.ExitCode != 1 || terminated(t, pod).ExitCode != 0 {
		t.Fatalf("retry: %+v", cs)
	}

	// Deleting the Job of a running process: the pod is deleted, the process killed.
	sleeper := e.job("sleeper", shellImage, []string{"-c", "sleep 300"}, "")
	if _, err := jobs.Create(e.ctx, sleeper, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("sleeper pod Running", 20*time.Second, func() (bool, error) {
		pods, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: "app=sleeper"})
		return err == nil && len(pods.Items) == 1 && pods.Items[0].Status.Phase == corev1.PodRunning, err
	})
	background := metav1.DeletePropagationBackground
	if err := jobs.Delete(e.ctx, "sleeper", metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
		t.Fatal(err)
	}
	e.eventually("sleeper pod killed and gone", 20*time.Second, func() (bool, error) {
		pods, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: "app=sleeper"})
		return err == nil && len(pods.Items) == 0, err
	})
}

func (e *env) rbac(t *testing.T) {
	e.t = t
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}}
	if _, err := e.client.CoreV1().ServiceAccounts(e.ns).Create(e.ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := e.client.CoreV1().ServiceAccounts(e.ns).CreateToken(e.ctx, "reader", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(e.config)
	cfg.BearerToken = tr.Status.Token
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = as.CoreV1().ConfigMaps(e.ns).List(e.ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("without RBAC: want 403, got %v", err)
	}
	t.Logf("without RBAC: %v", err)
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"list"}}},
	}
	if _, err := e.client.RbacV1().Roles(e.ns).Create(e.ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: e.ns}},
	}
	if _, err := e.client.RbacV1().RoleBindings(e.ns).Create(e.ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("allowed after the RoleBinding", 10*time.Second, func() (bool, error) {
		_, err := as.CoreV1().ConfigMaps(e.ns).List(e.ctx, metav1.ListOptions{})
		return err == nil, nil
	})
	if _, err := as.CoreV1().Secrets(e.ns).List(e.ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("secrets are not granted: want 403, got %v", err)
	}
}

func (e *env) applyCRD(crd *apiextensionsv1.CustomResourceDefinition) error {
	client, err := apiextensions.NewForConfig(e.config)
	if err != nil {
		return err
	}
	crd.APIVersion, crd.Kind = "apiextensions.k8s.io/v1", "CustomResourceDefinition"
	body, err := yaml.Marshal(crd)
	if err != nil {
		return err
	}
	force := true
	_, err = client.ApiextensionsV1().CustomResourceDefinitions().Patch(e.ctx, crd.Name, types.ApplyYAMLPatchType, body,
		metav1.PatchOptions{FieldManager: "check", Force: &force})
	if err != nil {
		return err
	}
	e.eventually("CRD "+crd.Name+" Established", 20*time.Second, func() (bool, error) {
		got, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(e.ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	return nil
}

func (e *env) crds(t *testing.T) {
	e.t = t
	files, _ := filepath.Glob(filepath.Join(e.crdsDir, "*.yaml"))
	if len(files) == 0 {
		t.Fatalf("no CRDs in %s", e.crdsDir)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(data, &crd); err != nil {
			t.Fatal(err)
		}
		if err := e.applyCRD(&crd); err != nil {
			t.Errorf("%s refused: %v", filepath.Base(f), err)
		}
	}

	// What apiextensions refuses, and what CEL refuses at admission.
	objectSchema := func(props map[string]apiextensionsv1.JSONSchemaProps) *apiextensionsv1.JSONSchemaProps {
		return &apiextensionsv1.JSONSchemaProps{Type: "object", Properties: props}
	}
	widget := func(spec apiextensionsv1.JSONSchemaProps) *apiextensionsv1.CustomResourceDefinition {
		return &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: "widgets.check.example"},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: "check.example",
				Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
				Scope: apiextensionsv1.NamespaceScoped,
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
					Name: "v1", Served: true, Storage: true,
					Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: objectSchema(map[string]apiextensionsv1.JSONSchemaProps{"spec": spec})},
				}},
			},
		}
	}
	closed := *objectSchema(map[string]apiextensionsv1.JSONSchemaProps{"a": {Type: "string"}})
	closed.AdditionalProperties = &apiextensionsv1.JSONSchemaPropsOrBool{Allows: false}
	err := e.applyCRD(widget(closed))
	if err == nil || !strings.Contains(err.Error(), "additionalProperties and properties are mutual exclusive") {
		t.Fatalf("properties with additionalProperties: false: want a refusal, got %v", err)
	}
	t.Logf("properties with additionalProperties: false refused: %v", err)

	spec := *objectSchema(map[string]apiextensionsv1.JSONSchemaProps{"min": {Type: "integer"}, "max": {Type: "integer"}})
	spec.XValidations = apiextensionsv1.ValidationRules{{Rule: "self.min <= self.max", Message: "min must not exceed max"}}
	if err := e.applyCRD(widget(spec)); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(e.config)
	if err != nil {
		t.Fatal(err)
	}
	widgets := dyn.Resource(schema.GroupVersionResource{Group: "check.example", Version: "v1", Resource: "widgets"}).Namespace(e.ns)
	obj := func(name string, min, max int64) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "check.example/v1", "kind": "Widget",
			"metadata": map[string]any{"name": name},
			"spec":     map[string]any{"min": min, "max": max},
		}}
	}
	force := true
	if _, err := widgets.Apply(e.ctx, "good", obj("good", 1, 2), metav1.ApplyOptions{FieldManager: "check", Force: force}); err != nil {
		t.Fatalf("server-side apply of a valid object: %v", err)
	}
	_, err = widgets.Apply(e.ctx, "bad", obj("bad", 3, 2), metav1.ApplyOptions{FieldManager: "check", Force: force})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "min must not exceed max") {
		t.Fatalf("CEL: want Invalid with the rule's message, got %v", err)
	}
	t.Logf("CEL refused: %v", err)
	ext, _ := apiextensions.NewForConfig(e.config)
	_ = ext.ApiextensionsV1().CustomResourceDefinitions().Delete(e.ctx, "widgets.check.example", metav1.DeleteOptions{})
}

func (e *env) namespaceDeletion(t *testing.T) {
	e.t = t
	if err := e.client.CoreV1().Namespaces().Delete(e.ctx, e.ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("namespace "+e.ns+" terminated and gone", 60*time.Second, func() (bool, error) {
		_, err := e.client.CoreV1().Namespaces().Get(e.ctx, e.ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}
