package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fakeSources serves Secrets and ConfigMaps from maps keyed by name (one namespace).
type fakeSources struct {
	secrets    map[string]map[string]string
	configMaps map[string]map[string]string
}

func (f fakeSources) secret(_ context.Context, _, name string) (*corev1.Secret, error) {
	data, ok := f.secrets[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
	}
	s := &corev1.Secret{Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s, nil
}

func (f fakeSources) configMap(_ context.Context, _, name string) (*corev1.ConfigMap, error) {
	data, ok := f.configMaps[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
	}
	return &corev1.ConfigMap{Data: data}, nil
}

func (f fakeSources) token(_ context.Context, pod *corev1.Pod, audience string, _ int64) (string, error) {
	return "token-for-" + pod.Name + "-" + audience, nil
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "job-abc", Namespace: "realm", UID: "1234-5678",
			Labels: map[string]string{"app": "portcullis"},
		},
		Spec: corev1.PodSpec{NodeName: "n1", ServiceAccountName: "sa"},
		Status: corev1.PodStatus{
			PodIP: "10.244.0.2", PodIPs: []corev1.PodIP{{IP: "10.244.0.2"}},
		},
	}
}

var sources1 = fakeSources{
	secrets:    map[string]map[string]string{"db": {"url": "postgres://x"}, "extra": {"A": "1", "bad name": "x"}},
	configMaps: map[string]map[string]string{"cfg": {"mode": "fast"}},
}

func TestResolveEnv(t *testing.T) {
	yes := true
	c := &corev1.Container{
		Name:    "main",
		EnvFrom: []corev1.EnvFromSource{{Prefix: "X_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "extra"}}}},
		Env: []corev1.EnvVar{
			{Name: "PLAIN", Value: "v"},
			{Name: "DATABASE_URL", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "url"}}},
			{Name: "MODE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "mode"}}},
			{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "COMBINED", Value: "$(POD).$(NS) $(UNDEFINED) $$(POD)"},
			{Name: "GONE", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "missing"}, Key: "k", Optional: &yes}}},
			{Name: "PLAIN", Value: "again"},
		},
	}
	e, err := resolveEnv(context.Background(), sources1, testPod(), c)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"X_A=1", "PLAIN=again", "DATABASE_URL=postgres://x", "MODE=fast", "POD=job-abc", "NS=realm",
		"IP=10.244.0.2", "APP=portcullis", "COMBINED=job-abc.realm $(UNDEFINED) $(POD)",
	}
	if got := e.list(); !reflect.DeepEqual(got, want) {
		t.Fatalf("env\n got %q\nwant %q", got, want)
	}
}

func TestResolveEnvMissingSecretIsAConfigError(t *testing.T) {
	for _, ref := range []corev1.SecretKeySelector{
		{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "url"},
		{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "nokey"},
	} {
		c := &corev1.Container{Env: []corev1.EnvVar{{Name: "V", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &ref}}}}
		_, err := resolveEnv(context.Background(), sources1, testPod(), c)
		var ce *configError
		if !errors.As(err, &ce) || ce.reason != "CreateContainerConfigError" {
			t.Fatalf("%+v: want a CreateContainerConfigError, got %v", ref, err)
		}
	}
}

func TestMountPathTranslation(t *testing.T) {
	c := &corev1.Container{
		VolumeMounts: []corev1.VolumeMount{
			{Name: "config", MountPath: "/etc/portcullis"},
			{Name: "secrets", MountPath: "/var/run/portcullis/secrets"},
			{Name: "nested", MountPath: "/etc/portcullis/extra/"},
			{Name: "tmp", MountPath: "/tmp", SubPath: "scratch"},
		},
		TerminationMessagePath: "/dev/termination-log",
	}
	dirs := map[string]string{
		"config": "/run/p/volumes/config", "secrets": "/run/p/volumes/secrets",
		"nested": "/run/p/volumes/nested", "tmp": "/run/p/volumes/tmp",
	}
	m, err := mountMappings(c, dirs, newEnv(), "/run/p/main.termination-log")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"/etc/portcullis/realm.yaml":             "/run/p/volumes/config/realm.yaml",
		"/etc/portcullis":                        "/run/p/volumes/config",
		"/etc/portcullis/extra/a":                "/run/p/volumes/nested/a",
		"/var/run/portcullis/secrets":            "/run/p/volumes/secrets",
		"/tmp/x":                                 "/run/p/volumes/tmp/scratch/x",
		"/dev/termination-log":                   "/run/p/main.termination-log",
		"/etc/portcullis-other/file":             "/etc/portcullis-other/file",
		"retention":                              "retention",
		"--config=/etc/portcullis/realm.yaml":    "--config=/run/p/volumes/config/realm.yaml",
		"--termination-log=/dev/termination-log": "--termination-log=/run/p/main.termination-log",
		"key=/etc/portcullis/realm.yaml":         "key=/etc/portcullis/realm.yaml",
	}
	for in, want := range cases {
		if got := translateArg(in, m); got != want {
			t.Errorf("translateArg(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestContainerArgv(t *testing.T) {
	got := containerArgv([]string{"/usr/local/bin/portcullis-authserver"}, []string{"retention", "run"})
	if !reflect.DeepEqual(got, []string{"retention", "run"}) {
		t.Fatalf("got %q", got)
	}
	got = containerArgv([]string{"/bin/sh", "-c"}, []string{"echo hi"})
	if !reflect.DeepEqual(got, []string{"-c", "echo hi"}) {
		t.Fatalf("got %q", got)
	}
	if got = containerArgv(nil, []string{"a"}); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("got %q", got)
	}
}

func TestImageRepository(t *testing.T) {
	cases := map[string]string{
		"ghcr.io/portcullis-dev/portcullis:0.1.0":      "ghcr.io/portcullis-dev/portcullis",
		"ghcr.io/portcullis-dev/portcullis":            "ghcr.io/portcullis-dev/portcullis",
		"ghcr.io/portcullis-dev/portcullis@sha256:abc": "ghcr.io/portcullis-dev/portcullis",
		"ghcr.io/portcullis-dev/portcullis:1@sha256:a": "ghcr.io/portcullis-dev/portcullis",
		"localhost:5000/tool:v2":                       "localhost:5000/tool",
		"localhost:5000/tool":                          "localhost:5000/tool",
		"busybox":                                      "busybox",
	}
	for in, want := range cases {
		if got := imageRepository(in); got != want {
			t.Errorf("imageRepository(%q) = %q, want %q", in, got, want)
		}
	}
	m := ImageBinaries{}
	if err := m.Set("ghcr.io/portcullis-dev/portcullis=/bin/true"); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("ghcr.io/x:tag=/bin/true"); err == nil {
		t.Fatal("a tagged image was accepted")
	}
	if p, ok := m.lookup("ghcr.io/portcullis-dev/portcullis:0.1.0"); !ok || p != "/bin/true" {
		t.Fatalf("lookup = %q, %v", p, ok)
	}
	if _, ok := m.lookup("ghcr.io/portcullis-dev/other:0.1.0"); ok {
		t.Fatal("an unmapped image matched")
	}
}

func TestVolumeFiles(t *testing.T) {
	mode := int32(0o440)
	pod := testPod()
	v := &corev1.Volume{Name: "secrets", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: &mode,
		Sources: []corev1.VolumeProjection{
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "extra"},
				Items: []corev1.KeyToPath{{Key: "A", Path: "renamed"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", Audience: "aud"}},
		},
	}}}
	files, supported, err := volumeFiles(context.Background(), sources1, pod, v)
	if err != nil || !supported {
		t.Fatal(err, supported)
	}
	dir := t.TempDir()
	if err := writeVolume(dir, files); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"url": "postgres://x", "renamed": "1", "namespace": "realm", "token": "token-for-job-abc-aud",
	} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q (%v), want %q", name, got, err, want)
		}
	}
	missing := &corev1.Volume{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}}}
	if _, _, err := volumeFiles(context.Background(), sources1, pod, missing); !apierrors.IsNotFound(err) {
		t.Fatalf("missing ConfigMap: %v", err)
	}
}

func TestTerminationMessage(t *testing.T) {
	dir := t.TempDir()
	term, logFile := filepath.Join(dir, "term"), filepath.Join(dir, "log")
	var lines []string
	for i := 0; i < 100; i++ {
		lines = append(lines, "line")
	}
	lines[99] = "last"
	if err := os.WriteFile(logFile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(term, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fallback := corev1.TerminationMessageFallbackToLogsOnError
	if got := terminationMessage(term, logFile, fallback, 0); got != "" {
		t.Fatalf("success with an empty file: %q", got)
	}
	got := terminationMessage(term, logFile, fallback, 1)
	if n := strings.Count(got, "\n") + 1; n != 80 || !strings.HasSuffix(got, "last") {
		t.Fatalf("fallback: %d lines, %q", n, got)
	}
	if got := terminationMessage(term, logFile, corev1.TerminationMessageReadFile, 1); got != "" {
		t.Fatalf("File policy used the log: %q", got)
	}
	if err := os.WriteFile(term, []byte(strings.Repeat("x", 5000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := terminationMessage(term, logFile, fallback, 1); len(got) != 4096 {
		t.Fatalf("message of %d bytes", len(got))
	}
	if got := string(tail([]byte(strings.Repeat("y", 3000)), 80, 2048)); len(got) != 2048 {
		t.Fatalf("tail of %d bytes", len(got))
	}
}
