package node

// What a kubelet resolves before it starts a container, done the same way here: the
// environment (values, ConfigMap/Secret keys, the downward API, $(VAR) expansion), the files of
// the pod's volumes, and, because nothing is mounted, the mapping from each mount path to the
// directory the volume was written to.

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	podresource "k8s.io/kubernetes/pkg/api/v1/resource"
	"k8s.io/kubernetes/pkg/fieldpath"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

// sources reads what a pod refers to. Missing objects are reported as API NotFound errors.
type sources interface {
	secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	configMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	// token is a service-account token for the pod, bound to it (TokenRequest API).
	token(ctx context.Context, pod *corev1.Pod, audience string, expirationSeconds int64) (string, error)
}

// configError is why a container cannot be started yet; reason is the kubelet's waiting
// reason (CreateContainerConfigError for the environment, ContainerCreating for volumes).
type configError struct {
	reason, message string
}

func (e *configError) Error() string { return e.reason + ": " + e.message }

func envError(format string, args ...any) error {
	return &configError{reason: "CreateContainerConfigError", message: fmt.Sprintf(format, args...)}
}

func volumeError(volume string, err error) error {
	return &configError{
		reason:  "ContainerCreating",
		message: fmt.Sprintf("MountVolume.SetUp failed for volume %q : %v", volume, err),
	}
}

// nodeAllocatable is what the simulated node offers; it is also the limit the downward API
// reports for a container without one, as on a real node.
var nodeAllocatable = corev1.ResourceList{
	corev1.ResourceCPU:              resource.MustParse("8"),
	corev1.ResourceMemory:           resource.MustParse("32Gi"),
	corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	corev1.ResourcePods:             resource.MustParse("110"),
}

// env is an ordered environment: later definitions of a name replace earlier ones in place.
type env struct {
	names  []string
	values map[string]string
}

func newEnv() *env { return &env{values: map[string]string{}} }

func (e *env) set(name, value string) {
	if _, ok := e.values[name]; !ok {
		e.names = append(e.names, name)
	}
	e.values[name] = value
}

// list returns NAME=value pairs in definition order.
func (e *env) list() []string {
	out := make([]string, 0, len(e.names))
	for _, n := range e.names {
		out = append(out, n+"="+e.values[n])
	}
	return out
}

func optional(b *bool) bool { return b != nil && *b }

// podFieldValue is the value of a downward-API field path, as the kubelet computes it.
func podFieldValue(pod *corev1.Pod, fieldPath string) (string, error) {
	ips := func(list []corev1.PodIP) string {
		out := make([]string, 0, len(list))
		for _, ip := range list {
			out = append(out, ip.IP)
		}
		return strings.Join(out, ",")
	}
	switch fieldPath {
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.hostIPs":
		hostIPs := make([]corev1.PodIP, 0, len(pod.Status.HostIPs))
		for _, ip := range pod.Status.HostIPs {
			hostIPs = append(hostIPs, corev1.PodIP(ip))
		}
		return ips(hostIPs), nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.podIPs":
		return ips(pod.Status.PodIPs), nil
	}
	return fieldpath.ExtractFieldPathAsString(pod, fieldPath)
}

func resourceFieldValue(pod *corev1.Pod, container string, sel *corev1.ResourceFieldSelector) (string, error) {
	if sel.ContainerName != "" {
		container = sel.ContainerName
	}
	return podresource.ExtractResourceValueByContainerNameAndNodeAllocatable(sel, pod, container, nodeAllocatable)
}

// keyValue reads one key of a Secret or ConfigMap; ok is false when an optional reference is
// missing.
func keyValue(ctx context.Context, src sources, namespace string, ref any) (value string, ok bool, err error) {
	switch r := ref.(type) {
	case *corev1.SecretKeySelector:
		s, err := src.secret(ctx, namespace, r.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && optional(r.Optional) {
				return "", false, nil
			}
			return "", false, envError("%v", err)
		}
		v, found := s.Data[r.Key]
		if !found {
			if optional(r.Optional) {
				return "", false, nil
			}
			return "", false, envError("couldn't find key %s in Secret %s/%s", r.Key, namespace, r.Name)
		}
		return string(v), true, nil
	case *corev1.ConfigMapKeySelector:
		cm, err := src.configMap(ctx, namespace, r.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && optional(r.Optional) {
				return "", false, nil
			}
			return "", false, envError("%v", err)
		}
		if v, found := cm.Data[r.Key]; found {
			return v, true, nil
		}
		if v, found := cm.BinaryData[r.Key]; found {
			return string(v), true, nil
		}
		if optional(r.Optional) {
			return "", false, nil
		}
		return "", false, envError("couldn't find key %s in ConfigMap %s/%s", r.Key, namespace, r.Name)
	}
	return "", false, fmt.Errorf("unknown key reference %T", ref)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// resolveEnv computes a container's environment as the kubelet does: envFrom first, then env
// in order, each value expanded against what is defined before it.
func resolveEnv(ctx context.Context, src sources, pod *corev1.Pod, c *corev1.Container) (*env, error) {
	out := newEnv()
	for _, from := range c.EnvFrom {
		data := map[string]string{}
		switch {
		case from.ConfigMapRef != nil:
			cm, err := src.configMap(ctx, pod.Namespace, from.ConfigMapRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, envError("%v", err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := src.secret(ctx, pod.Namespace, from.SecretRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional(from.SecretRef.Optional) {
					continue
				}
				return nil, envError("%v", err)
			}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		for _, k := range sortedKeys(data) {
			name := from.Prefix + k
			// The kubelet skips keys that are no valid variable names (with an event).
			if len(validation.IsEnvVarName(name)) == 0 {
				out.set(name, data[k])
			}
		}
	}
	mapping := expansion.MappingFuncFor(out.values)
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			out.set(e.Name, expansion.Expand(e.Value, mapping))
			continue
		}
		var (
			value string
			ok    = true
			err   error
		)
		switch from := e.ValueFrom; {
		case from.FieldRef != nil:
			value, err = podFieldValue(pod, from.FieldRef.FieldPath)
		case from.ResourceFieldRef != nil:
			value, err = resourceFieldValue(pod, c.Name, from.ResourceFieldRef)
		case from.SecretKeyRef != nil:
			value, ok, err = keyValue(ctx, src, pod.Namespace, from.SecretKeyRef)
		case from.ConfigMapKeyRef != nil:
			value, ok, err = keyValue(ctx, src, pod.Namespace, from.ConfigMapKeyRef)
		default:
			err = envError("env %s: unsupported valueFrom", e.Name)
		}
		if err != nil {
			if _, isConfig := err.(*configError); !isConfig {
				err = envError("env %s: %v", e.Name, err)
			}
			return nil, err
		}
		if ok {
			out.set(e.Name, value)
		}
	}
	return out, nil
}

// expandCommand expands $(VAR) references in a container's command and args.
func expandCommand(c *corev1.Container, e *env) (command, args []string) {
	mapping := expansion.MappingFuncFor(e.values)
	for _, s := range c.Command {
		command = append(command, expansion.Expand(s, mapping))
	}
	for _, s := range c.Args {
		args = append(args, expansion.Expand(s, mapping))
	}
	return command, args
}

// volumeFile is one file of a materialised volume, relative to the volume's directory.
type volumeFile struct {
	path string
	data []byte
	mode int32
}

func fileMode(item, def *int32, fallback int32) int32 {
	switch {
	case item != nil:
		return *item
	case def != nil:
		return *def
	}
	return fallback
}

// keyFiles is the files of a ConfigMap's or Secret's data: every key, or the listed items.
func keyFiles(missingKey string, data map[string][]byte, items []corev1.KeyToPath, isOptional bool, defaultMode *int32) ([]volumeFile, error) {
	if len(items) == 0 {
		files := make([]volumeFile, 0, len(data))
		for _, k := range sortedKeys(data) {
			files = append(files, volumeFile{path: k, data: data[k], mode: fileMode(nil, defaultMode, 0o644)})
		}
		return files, nil
	}
	files := make([]volumeFile, 0, len(items))
	for _, item := range items {
		v, ok := data[item.Key]
		if !ok {
			if isOptional {
				continue
			}
			return nil, fmt.Errorf("%s: %s", missingKey, item.Key)
		}
		files = append(files, volumeFile{path: item.Path, data: v, mode: fileMode(item.Mode, defaultMode, 0o644)})
	}
	return files, nil
}

func configMapData(cm *corev1.ConfigMap) map[string][]byte {
	data := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return data
}

func configMapFiles(ctx context.Context, src sources, ns, name string, items []corev1.KeyToPath, opt bool, mode *int32) ([]volumeFile, error) {
	cm, err := src.configMap(ctx, ns, name)
	if err != nil {
		if apierrors.IsNotFound(err) && opt {
			return nil, nil
		}
		return nil, err
	}
	return keyFiles("configmap references non-existent config key", configMapData(cm), items, opt, mode)
}

func secretFiles(ctx context.Context, src sources, ns, name string, items []corev1.KeyToPath, opt bool, mode *int32) ([]volumeFile, error) {
	s, err := src.secret(ctx, ns, name)
	if err != nil {
		if apierrors.IsNotFound(err) && opt {
			return nil, nil
		}
		return nil, err
	}
	return keyFiles("references non-existent secret key", s.Data, items, opt, mode)
}

func downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, mode *int32) ([]volumeFile, error) {
	files := make([]volumeFile, 0, len(items))
	for _, item := range items {
		var (
			value string
			err   error
		)
		switch {
		case item.FieldRef != nil:
			value, err = podFieldValue(pod, item.FieldRef.FieldPath)
		case item.ResourceFieldRef != nil:
			value, err = resourceFieldValue(pod, "", item.ResourceFieldRef)
		}
		if err != nil {
			return nil, fmt.Errorf("downward API %s: %w", item.Path, err)
		}
		files = append(files, volumeFile{path: item.Path, data: []byte(value), mode: fileMode(item.Mode, mode, 0o644)})
	}
	return files, nil
}

// volumeFiles resolves the content of one pod volume. supported is false for kinds that have
// no content to materialise here (emptyDir) or cannot be (hostPath, PVCs, ...): both become an
// empty directory.
func volumeFiles(ctx context.Context, src sources, pod *corev1.Pod, v *corev1.Volume) (files []volumeFile, supported bool, err error) {
	ns := pod.Namespace
	switch {
	case v.EmptyDir != nil:
		return nil, true, nil
	case v.ConfigMap != nil:
		files, err = configMapFiles(ctx, src, ns, v.ConfigMap.Name, v.ConfigMap.Items, optional(v.ConfigMap.Optional), v.ConfigMap.DefaultMode)
		return files, true, err
	case v.Secret != nil:
		files, err = secretFiles(ctx, src, ns, v.Secret.SecretName, v.Secret.Items, optional(v.Secret.Optional), v.Secret.DefaultMode)
		return files, true, err
	case v.DownwardAPI != nil:
		files, err = downwardFiles(pod, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode)
		return files, true, err
	case v.Projected != nil:
		mode := v.Projected.DefaultMode
		for _, s := range v.Projected.Sources {
			var more []volumeFile
			switch {
			case s.Secret != nil:
				more, err = secretFiles(ctx, src, ns, s.Secret.Name, s.Secret.Items, optional(s.Secret.Optional), mode)
			case s.ConfigMap != nil:
				more, err = configMapFiles(ctx, src, ns, s.ConfigMap.Name, s.ConfigMap.Items, optional(s.ConfigMap.Optional), mode)
			case s.DownwardAPI != nil:
				more, err = downwardFiles(pod, s.DownwardAPI.Items, mode)
			case s.ServiceAccountToken != nil:
				t := s.ServiceAccountToken
				expiration := int64(3600)
				if t.ExpirationSeconds != nil {
					expiration = *t.ExpirationSeconds
				}
				var token string
				token, err = src.token(ctx, pod, t.Audience, expiration)
				more = []volumeFile{{path: t.Path, data: []byte(token), mode: fileMode(nil, mode, 0o600)}}
			default:
				err = fmt.Errorf("unsupported projected volume source")
			}
			if err != nil {
				return nil, true, err
			}
			files = append(files, more...)
		}
		return files, true, nil
	}
	return nil, false, nil
}

// pathMapping replaces the path prefix from (a mount path inside the container) by to (the
// directory the volume was materialised in).
type pathMapping struct {
	from, to string
}

// sortMappings orders mappings longest path first, so the deepest mount wins.
func sortMappings(m []pathMapping) {
	sort.SliceStable(m, func(i, j int) bool { return len(m[i].from) > len(m[j].from) })
}

// translatePath maps s when it is a mount path or below one; ok tells whether it did.
func translatePath(s string, mappings []pathMapping) (string, bool) {
	for _, m := range mappings {
		from := strings.TrimSuffix(m.from, "/")
		if from == "" {
			continue // a mount on / would capture every absolute path
		}
		if s == from {
			return m.to, true
		}
		if strings.HasPrefix(s, from+"/") {
			return path.Join(m.to, s[len(from):]), true
		}
	}
	return s, false
}

// translateArg maps a whole argument, or the value of a `--flag=value` argument.
func translateArg(arg string, mappings []pathMapping) string {
	if t, ok := translatePath(arg, mappings); ok {
		return t
	}
	if strings.HasPrefix(arg, "-") {
		if flag, value, found := strings.Cut(arg, "="); found {
			if t, ok := translatePath(value, mappings); ok {
				return flag + "=" + t
			}
		}
	}
	return arg
}
