package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dwellhq/dwell/pipeline/admin"
)

// adminFlags are dwell run's admin API settings and, for dwell profile, where to ask.
type adminFlags struct {
	addr, advertise, tokenFile string
	pprof                      bool
}

// adminTokenFile is where dwell run keeps the admin token it made when it was given none, in
// its data dir, readable by its user only; dwell profile looks there too.
const adminTokenFile = "admin-token"

func (a *adminFlags) bind(fs *pflag.FlagSet, server bool) {
	fs.StringVar(&a.addr, "admin-addr", admin.DefaultAddr, "the admin API (interactive queries) at `HOST:PORT` (loopback by default; empty: off)")
	fs.StringVar(&a.tokenFile, "admin-token-file", "", "`FILE` holding the admin API's bearer token (or set DWELL_ADMIN_TOKEN; default: "+
		"the token dwell run writes to <data-dir>/"+adminTokenFile+")")
	if server {
		fs.StringVar(&a.advertise, "admin-advertise", "", "the admin API's `URL` as the group's other instances reach it, for forwarding queries (default http:// and --admin-addr, the host's name when it listens on all interfaces)")
		fs.BoolVar(&a.pprof, "pprof", false, "also serve /debug/pprof/ on the admin API (behind its token)")
	}
}

// token finds the admin token: --admin-token-file, DWELL_ADMIN_TOKEN, or the file in the data
// dir. With create (dwell run), a missing one is made there (random, 0600) so that the API is
// never open; made reports that.
func (a *adminFlags) token(lookupEnv func(string) (string, bool), dataDir string, create bool) (tok string, made bool, err error) {
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return "", false, usageError{fmt.Errorf("--admin-token-file: %w", err)}
		}
		if tok = strings.TrimSpace(string(b)); tok == "" {
			return "", false, usageError{fmt.Errorf("--admin-token-file: %s is empty", a.tokenFile)}
		}
		return tok, false, nil
	}
	if v, ok := lookupEnv("DWELL_ADMIN_TOKEN"); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), false, nil
	}
	path := filepath.Join(dataDir, adminTokenFile)
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), false, nil
	} else if !create {
		return "", false, usageError{fmt.Errorf("no admin token: set DWELL_ADMIN_TOKEN or --admin-token-file to the token dwell run was given, or pass the --data-dir of a local dwell run (%s: %v)", path, err)}
	}
	var raw [24]byte
	_, _ = rand.Read(raw[:])
	tok = hex.EncodeToString(raw[:])
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", false, err
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	return tok, true, nil
}

// listen opens the admin listener at once, so that a port in use is an error before anything
// starts, and returns it with the URL the instance advertises.
func (a *adminFlags) listen() (net.Listener, string, error) {
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		return nil, "", fmt.Errorf("admin API: %w; pass another --admin-addr, or --admin-addr '' to turn it off", err)
	}
	if a.advertise != "" {
		return ln, strings.TrimSuffix(a.advertise, "/"), nil
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return ln, "http://" + net.JoinHostPort(host, port), nil
}

// newProfileCmd is dwell profile: a profile's live state, from any running instance.
func newProfileCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile ID [--admin-addr HOST:PORT]",
		Short: "show a profile's live state (open visit and session, traits, schedules) from dwell run",
		Long: `Show a profile's live state from a running dwell run: its open visit and session, traits,
counters, tags, pending schedules and last event time, with the partition, input offsets and
watermark the answer reflects. Any instance answers: one that does not own the profile's
partition forwards the query to the one that does.

The token is DWELL_ADMIN_TOKEN, --admin-token-file, or the one a dwell run on this machine
wrote to <data-dir>/` + adminTokenFile + `.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("profile: name a profile id: dwell profile ID")}
			}
			return maxArgs(1, "ID")(cmd, args)
		},
	}
	fs := cmd.Flags()
	var (
		a       adminFlags
		dataDir string
	)
	inGroup(fs, groupAdmin, func() {
		a.bind(fs, false)
		fs.StringVar(&dataDir, "data-dir", "data", "the `DIR` of a dwell run on this machine, to read its admin token from")
	})
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		tok, _, err := a.token(e.lookupEnv, dataDir, false)
		if err != nil {
			return err
		}
		base := a.addr
		if !strings.Contains(base, "://") {
			base = "http://" + base
		}
		c := &admin.Client{BaseURL: base, Token: tok, HTTP: &http.Client{Timeout: 10e9}}
		p, err := c.Profile(cmd.Context(), args[0])
		if err != nil {
			if errors.Is(err, admin.ErrNotFound) {
				return fmt.Errorf("profile %q: no state: dwell has not seen it, or forgot it (--profile-ttl)", args[0])
			}
			return err
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	return cmd
}
