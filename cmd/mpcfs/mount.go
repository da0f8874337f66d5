package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/crypto/keywrap"
	"github.com/mpcfs/mpcfs/fs"
	"github.com/mpcfs/mpcfs/store"
)

// mountConfig is everything `mpcfs mount` needs; the demo fills it too.
type mountConfig struct {
	Endpoint   string
	StoreDir   string
	Region     string
	AllowOther bool
	MasterKey  string
	SysBucket  string
	Debug      bool
	Refresh    time.Duration
	ReadAhead  int // KiB
	Mountpoint string
	HTTP       httpConfig // --listen and what goes with it (serve.go)
}

func defaultStoreDir() string { return filepath.Join(dataHome(), "mpcfs", "store") }

func defaultMasterKey() string {
	if p := os.Getenv("MPCFS_MASTER_KEY_FILE"); p != "" {
		return p
	}
	return filepath.Join(configHome(), "mpcfs", "master.key")
}

func parseMountFlags(args []string) (*mountConfig, error) {
	c := &mountConfig{}
	fl := flag.NewFlagSet("mount", flag.ContinueOnError)
	c.storeFlags(fl)
	fl.BoolVar(&c.AllowOther, "allow-other", false, "let other users read buckets/ (control/ stays owner-only)")
	fl.IntVar(&c.ReadAhead, "read-ahead-kb", fs.DefaultReadAheadKB, "kernel read-ahead of the mount in KiB (set as root; 0 keeps the kernel's 128)")
	fl.BoolVar(&c.Debug, "debug", false, "log every FUSE request")
	c.HTTP.flags(fl, false)
	fl.Usage = func() {
		fmt.Fprintln(fl.Output(), "usage: mpcfs mount [flags] MOUNTPOINT")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	if fl.NArg() != 1 {
		fl.Usage()
		return nil, errors.New("mount needs exactly one MOUNTPOINT")
	}
	c.Mountpoint = fl.Arg(0)
	if err := c.HTTP.check(false); err != nil {
		return nil, err
	}
	return c, nil
}

// storeFlags are the flags of the store and task store, which mount and
// serve share.
func (c *mountConfig) storeFlags(fl *flag.FlagSet) {
	fl.StringVar(&c.Endpoint, "endpoint", "", "S3-compatible endpoint, e.g. http://127.0.0.1:9000 (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
	fl.StringVar(&c.StoreDir, "store", defaultStoreDir(), "local-directory store (each sub-folder a bucket), used when no --endpoint is given")
	fl.StringVar(&c.Region, "region", "region1", "the region that requests' location must equal")
	fl.StringVar(&c.MasterKey, "master-key-file", defaultMasterKey(), "file with the 32-byte master key that wraps task keys at rest (created 0600 if missing; env MPCFS_MASTER_KEY_FILE)")
	fl.StringVar(&c.SysBucket, "system-bucket", "", "bucket holding the task store (default .mpcfs for a local store, mpcfs-system for S3)")
	fl.DurationVar(&c.Refresh, "refresh", control.DefaultRefresh, "how often to re-read the task store for tasks created or changed by other mounts of the same store")
}

func runMount(args []string) error {
	c, err := parseMountFlags(args)
	if err != nil {
		return err
	}
	setMemoryLimit()
	lg := log.New(os.Stderr, "mpcfs: ", log.LstdFlags)
	// The HTTP side is set up (credentials read, address bound) before
	// mounting, so a bad flag fails before anything is mounted.
	web, err := c.HTTP.listen(lg)
	if err != nil {
		return err
	}
	m, err := startMount(c, lg)
	if err != nil {
		web.closeListener()
		return err
	}
	webDone := web.serve(m.mgr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		web.shutdown(s) // no new requests; those in flight finish before the Manager closes (below), bounded by --shutdown-grace
		m.log.Printf("%v: unmounting %s", s, c.Mountpoint)
		m.unmount()
	}()
	m.server.Wait()
	web.shutdown(nil) // unmounted from outside: stop serving too
	<-webDone
	m.mgr.Close()
	if s := crypto.LaneStats(); s != [4]int64{} {
		m.log.Printf("CBC lane engine: MB encrypted in steps of 1/2/3/4 lanes: %d/%d/%d/%d", s[0]>>20, s[1]>>20, s[2]>>20, s[3]>>20)
	}
	return nil
}

// defaultMemoryLimit is a soft heap limit for the daemon. Read buffers are
// bounded (2 MiB per open file, crypto package doc) but freed ones wait for
// the GC; with Go's default pacing 16 readers peaked at ~130 MB RSS, with
// this limit at under 80 MB and the same throughput (make bench). GOMEMLIMIT
// in the environment overrides it.
const defaultMemoryLimit = 80 << 20

func setMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}

// mounted is a running mount.
type mounted struct {
	server *fuse.Server
	mgr    *control.Manager
	log    *log.Logger
}

// startMount opens the store and task store and mounts.
func startMount(c *mountConfig, lg *log.Logger) (*mounted, error) {
	st, sys, err := openStore(c)
	if err != nil {
		return nil, err
	}
	mgr, err := newManager(c, st, sys, lg)
	if err != nil {
		return nil, err
	}
	server, err := fs.Mount(c.Mountpoint, fs.Options{Store: st, Manager: mgr, SysBucket: sys, AllowOther: c.AllowOther, Debug: c.Debug, Log: lg, ReadAheadKB: c.ReadAhead})
	if err != nil {
		mgr.Close()
		return nil, fmt.Errorf("mounting %s: %w", c.Mountpoint, err)
	}
	lg.Printf("mounted %s (region %s)", c.Mountpoint, c.Region)
	return &mounted{server: server, mgr: mgr, log: lg}, nil
}

// newManager loads the master key and the task store and starts the
// control plane; mount and serve share it.
func newManager(c *mountConfig, st store.Store, sys string, lg *log.Logger) (*control.Manager, error) {
	master, err := keywrap.LoadOrCreate(c.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	return control.NewManager(control.Config{Store: st, Region: c.Region, SysBucket: sys, Master: master, Log: lg, Refresh: c.Refresh})
}

func (m *mounted) unmount() {
	if err := m.server.Unmount(); err != nil {
		m.log.Printf("unmount: %v (is a file still open?)", err)
	}
}

func openStore(c *mountConfig) (store.Store, string, error) {
	if c.Endpoint != "" {
		st, err := store.NewS3(store.S3ConfigFromEnv(c.Endpoint, c.Region))
		return st, orDefault(c.SysBucket, "mpcfs-system"), err
	}
	if err := os.MkdirAll(c.StoreDir, 0o755); err != nil {
		return nil, "", err
	}
	st, err := store.NewLocal(c.StoreDir)
	return st, orDefault(c.SysBucket, ".mpcfs"), err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func dataHome() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share")
}

func configHome() string {
	if d, err := os.UserConfigDir(); err == nil {
		return d
	}
	return "."
}

func waitForSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
