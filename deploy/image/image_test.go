package main

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// TestImage builds the image around a stand-in binary, writes the OCI archive, reads it back
// as a registry client would and checks what a runtime sees: the entrypoint, the non-root
// user, the labels, the files, and no shell. With DWELL_IMAGE=dist/dwell-oci.tar (make image
// sets it) it inspects that archive instead, the real binary in it.
func TestImage(t *testing.T) {
	archive := os.Getenv("DWELL_IMAGE")
	if archive == "" {
		img, err := build(options{binary: []byte("\x7fELF stand-in"), caCerts: []byte("-----BEGIN CERTIFICATE-----\n"),
			version: "v9.9.9", commit: "c0ffee", arch: "amd64", created: time.Unix(0, 0).UTC(), source: "https://github.com/dwellhq/dwell"})
		if err != nil {
			t.Fatal(err)
		}
		archive = filepath.Join(t.TempDir(), "dwell-oci.tar")
		if err := writeArchive(img, archive); err != nil {
			t.Fatal(err)
		}
	} else if !filepath.IsAbs(archive) {
		archive = filepath.Join("..", "..", archive)
	}
	dir := t.TempDir()
	untar(t, archive, dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("index: %+v, want one OCI image manifest", im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if strings.Join(c.Entrypoint, " ") != binPath || strings.Join(c.Cmd, " ") != "run" {
		t.Errorf("entrypoint %q cmd %q, want [%s] [run]", c.Entrypoint, c.Cmd, binPath)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (non-root)", c.User)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	for _, k := range []string{"title", "version", "revision", "source", "created", "description"} {
		if c.Labels["org.opencontainers.image."+k] == "" {
			t.Errorf("no label org.opencontainers.image.%s: %v", k, c.Labels)
		}
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*tar.Header{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			files["/"+strings.TrimSuffix(h.Name, "/")] = h
		}
		rc.Close()
	}
	for _, sh := range []string{"/bin/sh", "/bin/bash", "/bin/busybox", "/usr/bin/sh", "/bin"} {
		if _, ok := files[sh]; ok {
			t.Errorf("the image has %s: it must have no shell", sh)
		}
	}
	if h := files[binPath]; h == nil || h.Mode&0o111 == 0 {
		t.Errorf("%s missing or not executable", binPath)
	}
	if h := files[certPath]; h == nil || h.Size == 0 {
		t.Errorf("%s missing or empty", certPath)
	}
	if h := files[dataDir]; h == nil || h.Uid != uid {
		t.Errorf("%s missing or not owned by %d", dataDir, uid)
	}
	if h := files["/tmp"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Error("/tmp missing or not world-writable with the sticky bit")
	}
	if files["/etc/passwd"] == nil {
		t.Error("no /etc/passwd: the user has no name")
	}
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, dir) {
			t.Fatalf("%s escapes the archive", h.Name)
		}
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
