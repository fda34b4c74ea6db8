package node

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// ImageBinaries maps image repositories (no tag, no digest) to local executables: a Job pod
// whose container image is in the map runs that executable instead of the image.
type ImageBinaries map[string]string

// String implements flag.Value.
func (m ImageBinaries) String() string {
	pairs := make([]string, 0, len(m))
	for repo, path := range m {
		pairs = append(pairs, repo+"="+path)
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

// Set implements flag.Value for one `IMAGE=PATH` (repeatable).
func (m ImageBinaries) Set(value string) error {
	image, path, ok := strings.Cut(value, "=")
	if !ok || image == "" || path == "" {
		return fmt.Errorf("want IMAGE=PATH, got %q", value)
	}
	repo := imageRepository(image)
	if repo != image {
		return fmt.Errorf("want an image repository without tag or digest, got %q", image)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	m[repo] = abs
	return nil
}

// lookup returns the executable mapped to image's repository.
func (m ImageBinaries) lookup(image string) (string, bool) {
	path, ok := m[imageRepository(image)]
	return path, ok
}

// imageRepository strips the digest (`@sha256:...`) and the tag (a `:` after the last `/`, so
// a registry port such as `localhost:5000/x` stays) from an image reference.
func imageRepository(image string) string {
	if at := strings.IndexByte(image, '@'); at >= 0 {
		image = image[:at]
	}
	lastSlash := strings.LastIndexByte(image, '/')
	if colon := strings.LastIndexByte(image, ':'); colon > lastSlash {
		image = image[:colon]
	}
	return image
}
