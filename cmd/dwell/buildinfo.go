package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set by the Makefile's build target (-ldflags -X), where the go command stamps no VCS
// information (GOFLAGS=-buildvcs=false, a source tree without .git, a container build).
var (
	buildVersion string // git describe --tags --always --dirty
	buildCommit  string // git rev-parse HEAD
)

// buildInfo is what dwell version prints and dwell_build_info carries.
type buildInfo struct {
	Version, Commit, GoVersion string
}

// readBuildInfo takes the version and commit from the linker flags when given, else from the
// build information the go command stamped: the module version (go install ...@v1.2.3) and
// vcs.revision (+ "-dirty" for vcs.modified). Unknown: "(devel)" and "unknown".
func readBuildInfo() buildInfo {
	b := buildInfo{Version: buildVersion, Commit: buildCommit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" {
			b.Version = bi.Main.Version
		}
		if b.Commit == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			b.Commit = rev
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

func (b buildInfo) String() string {
	return fmt.Sprintf("%s (commit %s, %s)", b.Version, b.Commit, b.GoVersion)
}

// newBuildInfoGauge is dwell_build_info{version,commit,goversion} = 1, the usual way to put a
// build on dashboards and to join it to other series (* on(instance) group_left(version)).
func newBuildInfoGauge(b buildInfo) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dwell", Name: "build_info",
		Help:        "1, labelled with the version, commit and Go version of this binary.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion}})
	g.Set(1)
	return g
}
