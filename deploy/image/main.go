// Command image builds dwell's container image without a Docker daemon (make image): one
// layer on an empty base holding the static binary (CGO_ENABLED=0), the CA certificates, an
// /etc/passwd with the non-root user dwell (65532) and writable /tmp and /var/lib/dwell; no
// shell, no package manager. It writes an OCI archive: a tar of an OCI image layout, which
// skopeo (oci-archive:), podman load, docker load (25+) and crane read.
//
//	go run ./deploy/image --binary bin/dwell-linux-amd64 --out dist/dwell-oci.tar --version v0.1.0 --commit abc
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's fixed parts, which the test checks.
const (
	binPath  = "/usr/local/bin/dwell"
	certPath = "/etc/ssl/certs/ca-certificates.crt"
	uid      = 65532 // the "nonroot" user of distroless images
	dataDir  = "/var/lib/dwell"
)

type options struct {
	binary  []byte // the static dwell binary
	caCerts []byte // PEM bundle
	version string
	commit  string
	arch    string
	created time.Time
	source  string
}

const description = "dwell: sessions and visits from tracking events on Kafka, exactly once"

func main() {
	var (
		bin     = flag.String("binary", "", "the static dwell binary (CGO_ENABLED=0) to put in the image")
		out     = flag.String("out", "dist/dwell-oci.tar", "the OCI archive to write")
		certs   = flag.String("ca-certs", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle of CA certificates (Debian: ca-certificates)")
		version = flag.String("version", "dev", "org.opencontainers.image.version")
		commit  = flag.String("commit", "unknown", "org.opencontainers.image.revision")
		arch    = flag.String("arch", runtime.GOARCH, "the binary's architecture")
	)
	flag.Parse()
	if err := buildAndWrite(*bin, *certs, *out, *version, *commit, *arch); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func buildAndWrite(bin, certs, out, version, commit, arch string) error {
	b, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("--binary: %w", err)
	}
	ca, err := os.ReadFile(certs)
	if err != nil {
		return fmt.Errorf("--ca-certs: %w (Debian: apt-get install ca-certificates)", err)
	}
	// Reproducible: the commit's time when SOURCE_DATE_EPOCH says so, else the epoch.
	created := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err == nil {
			created = time.Unix(sec, 0).UTC()
		}
	}
	img, err := build(options{binary: b, caCerts: ca, version: version, commit: commit, arch: arch, created: created,
		source: "https://github.com/dwellhq/dwell"})
	if err != nil {
		return err
	}
	if err := writeArchive(img, out); err != nil {
		return err
	}
	d, _ := img.Digest()
	fi, _ := os.Stat(out)
	fmt.Printf("wrote %s (%d bytes), image %s\n", out, fi.Size(), d)
	return nil
}

// build returns the image.
func build(o options) (v1.Image, error) {
	layer, err := rootLayer(o)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: o.created}, CreatedBy: "deploy/image (go-containerregistry)", Comment: "dwell " + o.version},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = o.arch, "linux", v1.Time{Time: o.created}
	cf.Config = v1.Config{
		Entrypoint:   []string{binPath},
		Cmd:          []string{"run"},
		User:         fmt.Sprintf("%d:%d", uid, uid),
		WorkingDir:   dataDir,
		Env:          []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=" + certPath},
		ExposedPorts: map[string]struct{}{"9090/tcp": {}, "8787/tcp": {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "dwell",
			"org.opencontainers.image.description": description,
			"org.opencontainers.image.version":     o.version,
			"org.opencontainers.image.revision":    o.commit,
			"org.opencontainers.image.source":      o.source,
			"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
		},
	}
	return mutate.ConfigFile(img, cf)
}

// rootLayer is the image's one layer: directories, the binary, the certificates, the user.
func rootLayer(o options) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) error {
		h.ModTime, h.Format = o.created, tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	dir := func(name string, mode int64, owner int) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode, Uid: owner, Gid: owner}
	}
	file := func(name string, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode}
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\ndwell:x:%d:%d:dwell:%s:/sbin/nologin\n", uid, uid, dataDir)
	group := fmt.Sprintf("root:x:0:\ndwell:x:%d:\n", uid)
	err := errors.Join(
		add(dir("etc/", 0o755, 0), nil),
		add(file("etc/passwd", 0o644), []byte(passwd)),
		add(file("etc/group", 0o644), []byte(group)),
		add(dir("etc/ssl/", 0o755, 0), nil),
		add(dir("etc/ssl/certs/", 0o755, 0), nil),
		add(file(certPath[1:], 0o644), o.caCerts),
		add(dir("tmp/", 0o1777, 0), nil),
		add(dir("usr/", 0o755, 0), nil),
		add(dir("usr/local/", 0o755, 0), nil),
		add(dir("usr/local/bin/", 0o755, 0), nil),
		add(file(binPath[1:], 0o755), o.binary),
		add(dir("var/", 0o755, 0), nil),
		add(dir("var/lib/", 0o755, 0), nil),
		add(dir(dataDir[1:]+"/", 0o750, uid), nil),
		tw.Close(),
	)
	if err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// writeArchive writes img as an OCI image layout in a tar file at path.
func writeArchive(img v1.Image, path string) error {
	dir, err := os.MkdirTemp("", "dwell-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "dwell"})); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil || name == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, name)
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname = filepath.ToSlash(rel), time.Unix(0, 0), 0, 0, "", ""
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		src, err := os.Open(name)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	return errors.Join(err, tw.Close(), f.Close())
}
