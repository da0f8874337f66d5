package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/fs"
	"github.com/mpcfs/mpcfs/internal/heaplimit"
	"github.com/mpcfs/mpcfs/internal/metrics"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// storeConfig says which task store and object store a command uses;
// mount, init, rekey and tasks share it.
type storeConfig struct {
	Endpoint        string
	StoreDir        string
	S3Region        string
	CABundle        string
	PathStyle       bool
	CredentialsFile string
	Profile         string
	SysBucket       string
	MasterKey       string
	noKey           bool // the command reads no master key (tasks)
}

// mountConfig is everything `mpcfs mount` needs; the demo fills it too.
type mountConfig struct {
	storeConfig
	Region        string
	AllowOther    bool
	OthersSee     string
	AllowNonEmpty bool
	Debug         bool
	Tuning        tuning.Tuning // the defaults, with --refresh and --read-ahead-kb
	Mountpoint    string
	HTTP          httpConfig // --listen and what goes with it (serve.go)
	Daemon        bool
	LogLevel      string
	LogFormat     string
	LogFile       string
	MetricsAddr   string
}

func (c *storeConfig) addFlags(fl *flag.FlagSet) {
	fl.StringVar(&c.Endpoint, "endpoint", "", "S3-compatible endpoint, e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000 (credentials: the AWS chain, see docs/admin.md)")
	fl.StringVar(&c.StoreDir, "store", "", "local-directory store (each sub-folder a bucket), used when no --endpoint is given (default $XDG_DATA_HOME/mpcfs/store or ~/.local/share/mpcfs/store)")
	fl.StringVar(&c.S3Region, "s3-region", "", "S3 signing region (default $AWS_REGION, else asked from the service)")
	fl.StringVar(&c.CABundle, "ca-bundle", "", "PEM file of extra CAs to trust for an https endpoint (default $AWS_CA_BUNDLE; Go also reads SSL_CERT_FILE)")
	fl.BoolVar(&c.PathStyle, "force-path-style", false, "address buckets as https://host/bucket/key instead of virtual-hosted https://bucket.host/key")
	fl.StringVar(&c.CredentialsFile, "credentials-file", "", "AWS shared credentials file (sets AWS_SHARED_CREDENTIALS_FILE; for fstab)")
	fl.StringVar(&c.Profile, "profile", "", "profile of the shared credentials file (sets AWS_PROFILE; for fstab)")
	fl.StringVar(&c.SysBucket, "system-bucket", "", "bucket holding the task store (default .mpcfs for a local store, mpcfs-system for S3)")
	fl.StringVar(&c.MasterKey, "master-key-file", "", "file with the 32-byte master key that seals task keys at rest (default $MPCFS_MASTER_KEY_FILE, else $XDG_CONFIG_HOME/mpcfs/master.key or ~/.config/mpcfs/master.key)")
}

// resolve fills the defaults that depend on the environment. Without a
// home folder nothing is guessed: a key or store must never land in
// whatever the current directory is.
func (c *storeConfig) resolve() error {
	if c.Profile != "" {
		os.Setenv("AWS_PROFILE", c.Profile)
	}
	if c.MasterKey == "" {
		c.MasterKey = os.Getenv("MPCFS_MASTER_KEY_FILE")
	}
	if c.MasterKey == "" && !c.noKey {
		dir, err := configHome()
		if err != nil {
			return fmt.Errorf("no default master key file: %v; pass --master-key-file (or set MPCFS_MASTER_KEY_FILE)", err)
		}
		c.MasterKey = filepath.Join(dir, "mpcfs", "master.key")
	}
	if c.Endpoint == "" && c.StoreDir == "" {
		dir, err := dataHome()
		if err != nil {
			return fmt.Errorf("no default store folder: %v; pass --store DIR or --endpoint URL", err)
		}
		c.StoreDir = filepath.Join(dir, "mpcfs", "store")
	}
	// Absolute paths: a daemon leaves the directory it was started in.
	for _, p := range []*string{&c.MasterKey, &c.StoreDir, &c.CABundle, &c.CredentialsFile} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return err
			}
			*p = abs
		}
	}
	if c.CredentialsFile != "" {
		os.Setenv("AWS_SHARED_CREDENTIALS_FILE", c.CredentialsFile)
	}
	if c.Endpoint == "" {
		c.SysBucket = orDefault(c.SysBucket, ".mpcfs")
	} else {
		c.SysBucket = orDefault(c.SysBucket, "mpcfs-system")
	}
	return nil
}

// describe names the store for log lines (never credentials).
func (c *storeConfig) describe() string {
	if c.Endpoint != "" {
		return "s3 " + c.Endpoint
	}
	return "local " + c.StoreDir
}

// managerFlags are the flags mount and serve share: the stores, the MPC
// region, the task-store refresh and the log.
func (c *mountConfig) managerFlags(fl *flag.FlagSet, logFileHelp string) {
	c.storeConfig.addFlags(fl)
	fl.StringVar(&c.Region, "region", "region1", "the MPC region requests' location must equal (not the S3 signing region: --s3-region)")
	fl.DurationVar(&c.Tuning.Refresh, "refresh", c.Tuning.Refresh, "how often to re-read the task store for tasks created or changed by other mounts of the same store")
	fl.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fl.StringVar(&c.LogFile, "log-file", "", logFileHelp)
}

func parseMountFlags(args []string) (*mountConfig, error) {
	c := &mountConfig{Tuning: tuning.Default()}
	fl := flag.NewFlagSet("mount", flag.ContinueOnError)
	c.managerFlags(fl, "append the log to this file (default stderr; with --daemon, syslog)")
	fl.BoolVar(&c.AllowOther, "allow-other", false, "let other users into buckets/ (control/ stays owner-only; see --others-see)")
	fl.StringVar(&c.OthersSee, "others-see", fs.OthersSeeOutputs, "with --allow-other, what other users may read in buckets/: outputs (task outputs only) or all (sources too)")
	fl.BoolVar(&c.AllowNonEmpty, "allow-non-empty", false, "mount over a folder that is not empty (hiding its files)")
	fl.IntVar(&c.Tuning.ReadAheadKB, "read-ahead-kb", c.Tuning.ReadAheadKB, "kernel read-ahead of the mount in KiB (set as root; 0 keeps the kernel's 128)")
	fl.BoolVar(&c.Daemon, "daemon", false, "run in the background; return once the mount is ready (exit status says whether it is)")
	fl.StringVar(&c.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464")
	fl.BoolVar(&c.Debug, "debug", false, "log every FUSE request")
	c.HTTP.flags(fl, false)
	fl.Usage = func() {
		fmt.Fprintln(fl.Output(), "usage: mpcfs mount [flags] MOUNTPOINT   (flags may also follow MOUNTPOINT)")
		fl.PrintDefaults()
	}
	pos, err := parseInterleaved(fl, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != 1 {
		fl.Usage()
		return nil, usageError{"mount needs exactly one MOUNTPOINT"}
	}
	if c.OthersSee != fs.OthersSeeOutputs && c.OthersSee != fs.OthersSeeAll {
		return nil, usageError{fmt.Sprintf("--others-see %q: want outputs or all", c.OthersSee)}
	}
	if err := c.HTTP.check(false); err != nil {
		return nil, usageError{err.Error()}
	}
	if err := c.resolve(); err != nil {
		return nil, err
	}
	var err2 error
	if c.Mountpoint, err2 = filepath.Abs(pos[0]); err2 != nil {
		return nil, err2
	}
	if c.LogFile != "" {
		if c.LogFile, err2 = filepath.Abs(c.LogFile); err2 != nil {
			return nil, err2
		}
	}
	return c, nil
}

// parseInterleaved parses flags wherever they stand, before or after the
// positional arguments (mpcfs mount /mnt --endpoint ...), as admins type
// them; "--" ends the flags.
func parseInterleaved(fl *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fl.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func runMount(args []string) error {
	c, err := parseMountFlags(args)
	if err != nil {
		return err
	}
	if c.Daemon && os.Getenv(daemonReadyEnv) == "" {
		return daemonize(c)
	}
	lg, closeLog, err := newLogger(c.LogLevel, c.LogFormat, c.LogFile, c.Daemon)
	if err != nil {
		return err
	}
	defer closeLog()
	setMemoryLimit(c.Tuning)
	// The HTTP side is set up (credentials read, address bound) before
	// mounting, so a bad flag fails before anything is mounted.
	web, err := c.HTTP.listen(stdLogger(lg))
	if err != nil {
		reportReady(err)
		return err
	}
	// Signals are caught from before the mount starts: while mounting,
	// go-fuse briefly holds a file inside the new mount open, and a
	// process killed then by SIGTERM's default action waits for ever on
	// its own mount. A signal during the start ends the mount as soon as
	// it is up; a second one exits at once (a start that hangs).
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	early := make(chan os.Signal, 1) // a signal taken while mounting
	starting := make(chan struct{})
	go func() {
		select {
		case s := <-sig:
			lg.Warn("signal while mounting: unmounting as soon as the mount is up; a second signal exits now", "signal", s.String())
			early <- s
			select {
			case s := <-sig:
				lg.Warn("second signal while mounting: exiting now", "signal", s.String())
				os.Exit(1)
			case <-starting:
			}
		case <-starting:
		}
	}()
	m, err := startMount(c, lg)
	close(starting)
	if err != nil {
		web.closeListener()
		reportReady(err)
		return err
	}
	m.web, m.webDone = web, web.serve(m.mgr)
	reportReady(nil)
	if c.Daemon {
		os.Chdir("/") // do not keep the starting directory busy
	}
	sdNotify("READY=1\nSTATUS=mounted " + c.Mountpoint)
	m.serveUntilSignal(sig, early)
	return nil
}

// setMemoryLimit keeps the Go heap and the chunk buffers together within
// Tuning.MemoryLimit, unless GOMEMLIMIT is set: the buffers live outside
// the heap with their own bound (Tuning.BufferMemory), and the heap's
// soft limit is what they leave (Tuning.HeapLimit). With Go's default
// pacing many requests let RSS grow well past what is live.
func setMemoryLimit(t tuning.Tuning) {
	if os.Getenv("GOMEMLIMIT") == "" && t.HeapLimit() > 0 {
		debug.SetMemoryLimit(t.HeapLimit())
	}
}

// followCatalogue gives the heap's soft limit Tuning.HeapPerTask of room
// for each task in mgr's catalogue (package heaplimit), until ctx ends.
func followCatalogue(ctx context.Context, t tuning.Tuning, mgr *control.Manager, lg *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" || t.HeapLimit() <= 0 {
		return
	}
	go heaplimit.Follow(ctx, t.HeapLimit(), func() int64 { return int64(mgr.TaskCount()) * t.HeapPerTask }, time.Second, func(limit int64) {
		lg.Info("heap soft limit set for the catalogue", "limit_mib", limit>>20, "tasks", mgr.TaskCount())
	})
}

// mounted is a running mount.
type mounted struct {
	server  *fuse.Server
	mgr     *control.Manager
	log     *slog.Logger
	dir     string
	metrics *http.Server
	web     *web            // the HTTP side (--listen), or nil
	webDone <-chan struct{} // closed when the HTTP side has stopped
	stopGC  context.CancelFunc
}

// startMount checks the mount point, opens the store, the master key and
// the task store, and mounts.
func startMount(c *mountConfig, lg *slog.Logger) (*mounted, error) {
	if err := checkMountpoint(c.Mountpoint, c.AllowNonEmpty); err != nil {
		return nil, err
	}
	phases := startupPhases{begin: processStart}
	phases.mark("process")
	st, err := openStore(&c.storeConfig)
	if err != nil {
		return nil, err
	}
	phases.mark("store")
	mgr, err := openManager(&c.storeConfig, c.Region, c.Tuning, st, lg)
	if err != nil {
		return nil, err
	}
	phases.mark("master key and task store")
	stdlog := stdLogger(lg)
	m := &mounted{mgr: mgr, log: lg, dir: c.Mountpoint}
	var gcCtx context.Context
	gcCtx, m.stopGC = context.WithCancel(context.Background())
	followCatalogue(gcCtx, c.Tuning, mgr, lg)
	if c.MetricsAddr != "" {
		if m.metrics, err = serveMetrics(c.MetricsAddr, lg); err != nil {
			mgr.Close()
			return nil, err
		}
	}
	metrics.WatchTasks(func() map[string]int {
		n := map[string]int{}
		for s, k := range mgr.StatusCounts() {
			n[string(s)] = k
		}
		return n
	})
	m.server, err = fs.Mount(c.Mountpoint, fs.Options{Store: st, Manager: mgr, SysBucket: c.SysBucket, AllowOther: c.AllowOther,
		OthersSee: c.OthersSee, Debug: c.Debug, Log: stdlog, Tuning: c.Tuning})
	if err != nil {
		m.stopServices()
		return nil, fmt.Errorf("mounting %s: %w", c.Mountpoint, err)
	}
	lg.Info("mounted", "mountpoint", c.Mountpoint, "store", c.describe(), "system_bucket", c.SysBucket,
		"master_key_file", c.MasterKey, "tasks_loaded", mgr.TaskCount(), "region", c.Region,
		"allow_other", c.AllowOther, "others_see", c.OthersSee, "version", versionString(),
		"startup", time.Since(processStart).Round(time.Millisecond), "startup_phases", phases.mark("FUSE mount"))
	return m, nil
}

// processStart is when the process started (near enough: package
// variables are set before main), for the mount's startup time.
var processStart = time.Now()

// startupPhases says where a slow start went ("process 12ms, store
// 40ms, ..."): at scale it is the task store, on a slow store the round
// trips of each phase.
type startupPhases struct {
	begin time.Time
	done  []string
}

// mark ends the phase called name and returns the phases so far.
func (p *startupPhases) mark(name string) string {
	now := time.Now()
	p.done = append(p.done, fmt.Sprintf("%s %v", name, now.Sub(p.begin).Round(time.Millisecond)))
	p.begin = now
	return strings.Join(p.done, ", ")
}

// openManager opens the master key (checked against the task store's
// check value; a new one is announced loudly) and the task store, and
// starts the control plane with the tuning; mount and serve share it.
func openManager(c *storeConfig, region string, tune tuning.Tuning, st store.Store, lg *slog.Logger) (*control.Manager, error) {
	if err := crypto.SetTuning(tune); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key, err := control.OpenMasterKey(ctx, st, c.SysBucket, c.MasterKey)
	if err != nil {
		return nil, err
	}
	if key.Created {
		announceNewKey(lg, c.MasterKey)
	}
	stdlog := stdLogger(lg)
	return control.NewManager(control.Config{Store: st, Region: region, SysBucket: c.SysBucket, Master: key.Master, Log: stdlog, Tuning: tune})
}

// announceNewKey is the loud line of a first start: without this file no
// task of the store can ever be served again.
func announceNewKey(lg *slog.Logger, path string) {
	lg.Warn("NEW MASTER KEY created: back this file up now, somewhere safe and apart from the store; without it no task of this store can be served again",
		"master_key_file", path)
}

func serveMetrics(addr string, lg *slog.Logger) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			lg.Error("metrics server", "err", err)
		}
	}()
	lg.Info("serving metrics", "url", "http://"+l.Addr().String()+"/metrics")
	return srv, nil
}

func (m *mounted) stopServices() {
	if m.webDone != nil {
		m.web.shutdown(nil) // unmounted from outside: stop serving too
		<-m.webDone
	}
	if m.metrics != nil {
		m.metrics.Close()
	}
	m.stopGC()
	m.mgr.Close()
}

// serveUntilSignal serves until the mount is unmounted (fusermount3 -u,
// umount) or a SIGINT/SIGTERM: then it unmounts, lazily if a file is still
// open, and returns. A second signal ends the process at once.
func (m *mounted) serveUntilSignal(sig, early chan os.Signal) {
	served := make(chan struct{})
	go func() { m.server.Wait(); close(served) }()
	var s os.Signal
	select {
	case <-served:
	case s = <-sig:
	case s = <-early:
	}
	if s != nil {
		sdNotify("STOPPING=1")
		m.web.shutdown(s) // HTTP responses in flight finish first (bounded)
		m.log.Info("unmounting", "signal", s.String(), "mountpoint", m.dir)
		go func() {
			s := <-sig
			m.log.Warn("second signal: exiting now", "signal", s.String())
			lazyUnmount(m.dir)
			os.Exit(1)
		}()
		if !m.unmount() {
			// Detached, but a file kept open holds the FUSE connection: it
			// ends when this process exits (that file then reads ENOTCONN).
			select {
			case <-served:
			case <-time.After(2 * time.Second):
			}
		}
	}
	m.stopServices()
	if b := crypto.Buffers(); b.Peak > 0 {
		m.log.Info("chunk buffers", "peak_mb", b.Peak*b.Size>>20, "limit_mb", b.Limit*b.Size>>20, "waits", b.Waits,
			"warm_evicted", crypto.WarmEvictions())
	}
	if s := crypto.LaneStats(); s != [4]int64{} {
		m.log.Info("CBC lane engine", "mb_1_2_3_4_lanes", fmt.Sprintf("%d/%d/%d/%d", s[0]>>20, s[1]>>20, s[2]>>20, s[3]>>20))
	}
}

// unmount unmounts cleanly, retrying a few times while files are open,
// then lazily (detached from the tree at once, gone when the last file
// closes). It reports whether the clean unmount worked.
func (m *mounted) unmount() bool {
	var err error
	for i := 0; i < 5; i++ {
		if err = m.server.Unmount(); err == nil {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	m.log.Warn("unmount failed, detaching lazily", "mountpoint", m.dir, "err", err)
	if err := lazyUnmount(m.dir); err != nil {
		m.log.Error("lazy unmount", "mountpoint", m.dir, "err", err)
	}
	return false
}

// lazyUnmount detaches the mount (umount -l): root directly, other users
// through fusermount3 -u -z.
func lazyUnmount(dir string) error {
	if os.Geteuid() == 0 {
		return syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(bin); err == nil {
			out, err := exec.Command(p, "-u", "-z", dir).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s -u -z: %v: %s", bin, err, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
	return errors.New("no fusermount3 for a lazy unmount")
}

// checkMountpoint refuses what would go wrong later or leave a stale mount
// behind: a missing path, a file, a stale or live mount, a non-empty folder.
func checkMountpoint(dir string, allowNonEmpty bool) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("mount point %s is a stale mount (its process is gone): run fusermount3 -u %s first", dir, dir)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mount point %s does not exist: create it (mkdir -p %s)", dir, dir)
	case err != nil:
		return fmt.Errorf("mount point: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("mount point %s is not a directory", dir)
	}
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	if fstype, ok := mountedAt(abs); ok {
		return fmt.Errorf("mount point %s is already mounted (%s): unmount it first (fusermount3 -u %s)", dir, fstype, dir)
	}
	if !allowNonEmpty {
		f, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("mount point: %w", err)
		}
		names, _ := f.Readdirnames(1)
		f.Close()
		if len(names) > 0 {
			return fmt.Errorf("mount point %s is not empty (it holds %s): mounting would hide its files; empty it or pass --allow-non-empty", dir, names[0])
		}
	}
	return nil
}

// mountedAt reports whether something is mounted at dir (an absolute path
// without symlinks), and its filesystem type, from /proc/self/mountinfo.
func mountedAt(dir string) (string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				return fields[i+1], true
			}
		}
		return "unknown", true
	}
	return "", false
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// openStore opens the store and, for S3, makes one request so a wrong
// endpoint, credential, CA or bucket is reported at start with its fix.
// The system bucket is created when missing.
func openStore(c *storeConfig) (store.Store, error) {
	if c.Endpoint == "" {
		if err := os.MkdirAll(c.StoreDir, 0o755); err != nil {
			return nil, err
		}
		st, err := store.NewLocal(c.StoreDir)
		return metrics.InstrumentStore(st), err
	}
	cfg := store.S3ConfigFromEnv(c.Endpoint)
	if c.S3Region != "" {
		cfg.Region = c.S3Region
	}
	if c.CABundle != "" {
		cfg.CABundle = c.CABundle
	}
	cfg.PathStyle = c.PathStyle
	st, err := store.NewS3(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = st.Check(ctx, c.SysBucket)
	if errors.Is(err, store.ErrNotExist) {
		if err = st.MakeBucket(ctx, c.SysBucket); err != nil {
			err = fmt.Errorf("system bucket %q does not exist and could not be created (%v): create it, or name an existing one with --system-bucket", c.SysBucket, err)
		}
	}
	if err != nil {
		return nil, err
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st.LearnRegions(ctx)
	}()
	return metrics.InstrumentStore(st), nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func dataHome() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".local", "share"), nil
}

func configHome() (string, error) { return os.UserConfigDir() }

func waitForSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
