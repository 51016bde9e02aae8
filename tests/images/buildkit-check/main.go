// buildkit-check: converts images/*.Dockerfile with BuildKit's own Dockerfile frontend
// (github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb, what `docker build` runs) to
// check what docker users get, on machines that have no Docker:
//   - the default build (BINARIES=build) parses, needs only the upstream images (rust, node for
//     the hub, the runtime base) and never the `staged` context of the prebuilt stage;
//   - BINARIES=prebuilt with another RUNTIME_BASE needs `staged` and that base, and no
//     rust or node image;
//   - both give the same image config (user, entrypoint, env, exposed ports, volumes).
//
// Usage: buildkit-check DOCKERFILE... (exit 1 on any failure). Run by tests/images/test.sh.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerui"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// resolver records the images the conversion needs and answers with an empty config.
type resolver struct {
	mu   sync.Mutex
	refs map[string]bool
}

func (r *resolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	r.mu.Lock()
	r.refs[ref] = true
	r.mu.Unlock()
	img := ocispecs.Image{Config: ocispecs.ImageConfig{Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}}}
	img.OS, img.Architecture = "linux", "amd64"
	dt, err := json.Marshal(img)
	return ref, digest.FromBytes(dt), dt, err
}

func convert(dt []byte, args map[string]string) ([]string, ocispecs.ImageConfig, error) {
	r := &resolver{refs: map[string]bool{}}
	res, err := dockerfile2llb.Dockerfile2LLB(context.Background(), dt, dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{BuildArgs: args},
		MetaResolver: r,
	})
	if err != nil {
		return nil, ocispecs.ImageConfig{}, err
	}
	var refs []string
	for ref := range r.refs {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	return refs, res.Image.Config.ImageConfig, nil
}

func main() {
	failed := false
	fail := func(format string, a ...any) {
		fmt.Printf("FAIL "+format+"\n", a...)
		failed = true
	}
	for _, path := range os.Args[1:] {
		dt, err := os.ReadFile(path)
		if err != nil {
			fail("%s: %v", path, err)
			continue
		}
		full, fullCfg, err := convert(dt, nil)
		if err != nil {
			fail("%s (default build): %v", path, err)
			continue
		}
		pre, preCfg, err := convert(dt, map[string]string{"BINARIES": "prebuilt", "RUNTIME_BASE": "localhost/wa-base/check:1"})
		if err != nil {
			fail("%s (BINARIES=prebuilt): %v", path, err)
			continue
		}
		has := func(refs []string, sub string) bool {
			for _, r := range refs {
				if strings.Contains(r, sub) {
					return true
				}
			}
			return false
		}
		switch {
		case has(full, "staged"):
			fail("%s: the default build needs the `staged` context: %v", path, full)
		case !has(full, "/rust:"):
			fail("%s: the default build does not compile in the rust image: %v", path, full)
		case has(pre, "/rust:") || has(pre, "/node:"):
			fail("%s: BINARIES=prebuilt still needs a builder image: %v", path, pre)
		case !has(pre, "staged") || !has(pre, "localhost/wa-base/check:1"):
			fail("%s: BINARIES=prebuilt does not take `staged` and RUNTIME_BASE: %v", path, pre)
		case !reflect.DeepEqual(fullCfg, preCfg):
			fail("%s: the image configs differ:\n  default  %+v\n  prebuilt %+v", path, fullCfg, preCfg)
		default:
			fmt.Printf("ok   %s with BuildKit's frontend: default build needs %v; prebuilt needs %v; same config (user %s, entrypoint %v)\n",
				path, full, pre, fullCfg.User, fullCfg.Entrypoint)
		}
	}
	if failed {
		os.Exit(1)
	}
}
