package fs_test

import (
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/crypto/keywrap"
	"github.com/mpcfs/mpcfs/fs"
	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// need and haveCmd are the one rule for missing tools (internal/testutil).
var need = testutil.Need

var haveCmd = testutil.HaveCmd

func needFUSE(t testing.TB) {
	_, err := os.Stat("/dev/fuse")
	need(t, "/dev/fuse", err == nil)
	need(t, "fusermount3 (apt-get install fuse3)", haveCmd("fusermount3") || haveCmd("fusermount"))
}

// fixture is a real FUSE mount of mpcfs over a store.
type fixture struct {
	t         *testing.T
	st        store.Store
	sys       string
	masterKey string
	mnt       string
	logFile   string
	server    *fuse.Server
	mgr       *control.Manager
	opts      mountOpts
}

func newFixture(t *testing.T, st store.Store, sys string) *fixture {
	return newFixtureOpts(t, st, sys, mountOpts{})
}

// mountOpts are the knobs the fault, durability and permission tests turn
// beyond newFixture's defaults.
type mountOpts struct {
	allowOther bool
	othersSee  string        // fs.OthersSeeOutputs (""), fs.OthersSeeAll
	refresh    time.Duration // task-store refresh (0: the default tuning's)
	masterKey  string        // share a master key with another fixture
	debug      bool          // go-fuse logs every request to the fixture's log file
	tune       func(*tuning.Tuning)
}

// newFixtureOpts is newFixture with mountOpts.
func newFixtureOpts(t *testing.T, st store.Store, sys string, o mountOpts) *fixture {
	needFUSE(t)
	dir := t.TempDir()
	f := &fixture{t: t, st: st, sys: sys, opts: o, masterKey: filepath.Join(dir, "master.key"),
		mnt: filepath.Join(dir, "mnt"), logFile: filepath.Join(dir, "mpcfs.log")}
	if o.masterKey != "" {
		f.masterKey = o.masterKey
	}
	if err := os.Mkdir(f.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f.mount()
	t.Cleanup(f.unmount)
	return f
}

// mount starts a Manager and a FUSE server, as `mpcfs mount` does.
func (f *fixture) mount() {
	f.t.Helper()
	master, err := keywrap.LoadOrCreate(f.masterKey)
	if err != nil {
		f.t.Fatal(err)
	}
	lf, err := os.OpenFile(f.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { lf.Close() })
	lg := log.New(lf, "mpcfs: ", log.LstdFlags)
	tune := tuning.Default()
	if f.opts.refresh != 0 {
		tune.Refresh = f.opts.refresh
	}
	if f.opts.tune != nil {
		f.opts.tune(&tune)
	}
	f.mgr, err = control.NewManager(control.Config{Store: f.st, Region: "region1", SysBucket: f.sys, Master: master, Log: lg, Tuning: tune})
	if err != nil {
		f.t.Fatal(err)
	}
	f.server, err = fs.Mount(f.mnt, fs.Options{Store: f.st, Manager: f.mgr, SysBucket: f.sys, Log: lg, AllowOther: f.opts.allowOther, OthersSee: f.opts.othersSee,
		Tuning: tune, Debug: f.opts.debug})
	if err != nil {
		f.mgr.Close()
		f.t.Fatal(err)
	}
}

// unmount unmounts (retrying while the kernel still holds files) and stops
// the manager; safe to call twice.
func (f *fixture) unmount() {
	if f.server == nil {
		return
	}
	var err error
	for i := 0; i < 50; i++ {
		if err = f.server.Unmount(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		f.t.Errorf("unmount %s: %v", f.mnt, err)
		exec.Command("fusermount3", "-u", "-z", f.mnt).Run()
	}
	f.server.Wait()
	f.mgr.Close()
	f.server = nil
}

func (f *fixture) path(parts ...string) string {
	return filepath.Join(append([]string{f.mnt}, parts...)...)
}
