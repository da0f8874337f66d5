package fs_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store/miniotest"
)

// buildMpcfs builds the real command into the test's temp folder.
func buildMpcfs(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mpcfs")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/mpcfs/mpcfs/cmd/mpcfs").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

// daemon is `mpcfs mount` running as its own process against MinIO, with
// the credentials in its environment (never in argv).
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	exited chan struct{}
	fx     *fixture // for path/create/wait; no in-process server
}

func startDaemon(t *testing.T, bin string, srv *miniotest.Server, mnt, masterKey, logFile string) *daemon {
	t.Helper()
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd := exec.Command(bin, "mount", "--endpoint", srv.Endpoint, "--master-key-file", masterKey,
		"--refresh", "500ms", mnt)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, cmd: cmd, exited: make(chan struct{}), fx: &fixture{t: t, mnt: mnt, logFile: logFile}}
	go func() { cmd.Wait(); close(d.exited) }()
	t.Cleanup(d.kill)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(mnt, "control", "tasks")); err == nil {
			return d
		}
		select {
		case <-d.exited:
			log, _ := os.ReadFile(logFile)
			t.Fatalf("mpcfs mount exited:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mpcfs mount did not mount %s within 30s", mnt)
		}
	}
}

// kill is kill -9 of the daemon's own PID, then a lazy unmount of the
// dead mount (as an admin would after a crash). Safe to call twice.
func (d *daemon) kill() {
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Kill()
		<-d.exited
	}
	exec.Command("fusermount3", "-u", "-z", d.fx.mnt).Run()
}

// stop is the clean way out: SIGTERM unmounts and exits.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.t.Errorf("mpcfs mount did not exit within 30s of SIGTERM")
		d.kill()
	}
}

// storedStatus reads a task's record straight from the task store.
func storedRecord(t *testing.T, srv *miniotest.Server, id string) map[string]any {
	t.Helper()
	rc, err := srv.Store().Open(t.Context(), "mpcfs-system", "tasks/"+id+".json", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, _ := io.ReadAll(rc)
	var rec map[string]any
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("task record %s: %v", id, err)
	}
	return rec
}

// TestKillDaemonMidTask runs the real `mpcfs mount` against MinIO, kills
// it with SIGKILL right after creating tasks, restarts MinIO (a reboot),
// mounts again and checks every task ends SUCCEEDED with readable output.
// A record left PROCESSING (as a kill during processing leaves it) is
// processed again on the next start, never left stuck.
func TestKillDaemonMidTask(t *testing.T) {
	srv, srcDir := minioLadder(t)
	need(t, "openssl", haveCmd("openssl"))
	dir := t.TempDir()
	mnt, masterKey, logFile := filepath.Join(dir, "mnt"), filepath.Join(dir, "master.key"), filepath.Join(dir, "mpcfs.log")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	s := newSecret(t)
	iv := []byte("0123456789abcdef")
	bin := buildMpcfs(t)

	d := startDaemon(t, bin, srv, mnt, masterKey, logFile)
	var ids []string
	for i := 0; i < 6; i++ {
		ids = append(ids, d.fx.create(fmt.Sprintf("t%d.json", i), request("AES-128-CBC", s, iv, fmt.Sprintf("kill/%d", i))))
	}
	checkArgv(t, d.cmd.Process.Pid, s.key, srv.SecretKey)
	if fi, err := os.Stat(masterKey); err != nil {
		t.Fatalf("no master key created on first run: %v", err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key created with mode %v, want 0600", fi.Mode().Perm())
	}
	d.kill()
	for _, id := range ids {
		t.Logf("task %s after kill -9: %v", id, storedRecord(t, srv, id)["status"])
	}
	if len(slices.Compact(slices.Sorted(slices.Values(ids)))) != len(ids) {
		t.Fatalf("task ids are not unique: %v", ids)
	}

	srv.Restart(t)
	d = startDaemon(t, bin, srv, mnt, masterKey, logFile)
	for _, id := range ids {
		if v := d.fx.wait(id); v.Status != control.Succeeded {
			t.Fatalf("task %s after restart: %s %s", id, v.Status, v.Description)
		}
	}
	rel := filepath.Join("v1", "seg002.ts")
	checkSegment(t, filepath.Join(srcDir, rel), filepath.Join(mnt, "buckets", "public", "kill", "5", rel), s.key, iv)
	d.kill()

	// What a kill during processing leaves: PROCESSING, no plan.
	rec := storedRecord(t, srv, ids[2])
	rec["status"], rec["end_time"], rec["description"] = "PROCESSING", "", ""
	delete(rec, "plan")
	data, _ := json.Marshal(rec)
	srv.PutFile(t, "mpcfs-system", "tasks/"+ids[2]+".json", data)

	d = startDaemon(t, bin, srv, mnt, masterKey, logFile)
	if v := d.fx.wait(ids[2]); v.Status != control.Succeeded {
		t.Fatalf("task left PROCESSING, after restart: %s %s", v.Status, v.Description)
	}
	checkSegment(t, filepath.Join(srcDir, rel), filepath.Join(mnt, "buckets", "public", "kill", "2", rel), s.key, iv)
	d.stop()
	logData, _ := os.ReadFile(logFile)
	for _, form := range keyForms(s.key) {
		if bytes.Contains(logData, form) {
			t.Errorf("the daemon's log holds the key (%q)", form)
		}
	}
}

// checkArgv: the daemon's command line holds neither the content key nor
// the store's secret key.
func checkArgv(t *testing.T, pid int, key []byte, secret string) {
	t.Helper()
	argv, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(argv, []byte(secret)) {
		t.Errorf("the store's secret key is in argv: %q", argv)
	}
	for _, form := range keyForms(key) {
		if bytes.Contains(argv, form) {
			t.Errorf("the content key is in argv: %q", argv)
		}
	}
}

// eventually polls (internal/testutil).
var eventually = testutil.Eventually

// TestTwoMountsShareTasks: two mounts over one MinIO (same system bucket
// and master key, as on two machines). A task created on one can be
// queried on the other at once, its outputs appear there within the
// refresh period, and a cancel on either is seen by both.
func TestTwoMountsShareTasks(t *testing.T) {
	srv, _ := minioLadder(t)
	a := newFixtureOpts(t, srv.Store(), "mpcfs-system", mountOpts{refresh: 300 * time.Millisecond})
	b := newFixtureOpts(t, srv.Store(), "mpcfs-system", mountOpts{refresh: 300 * time.Millisecond, masterKey: a.masterKey})

	id := a.create("shared.json", validRequest())
	if _, err := os.ReadFile(b.path("control", "tasks", id+".json")); err != nil {
		t.Fatalf("the second mount cannot query a task just created on the first: %v", err)
	}
	if v := a.wait(id); v.Status != control.Succeeded {
		t.Fatalf("task %s: %s %s", id, v.Status, v.Description)
	}
	if v := b.wait(id); v.Status != control.Succeeded {
		t.Fatalf("on the second mount task %s is %s", id, v.Status)
	}
	seg := []string{"buckets", "public", "out", "v0", "seg001.ts"}
	var onB []byte
	eventually(t, 5*time.Second, "output on the second mount", func() bool {
		var err error
		onB, err = os.ReadFile(b.path(seg...))
		return err == nil
	})
	onA, err := os.ReadFile(a.path(seg...))
	if err != nil || !bytes.Equal(onA, onB) || len(onA) == 0 {
		t.Fatalf("the two mounts serve different output: %d vs %d bytes, %v", len(onA), len(onB), err)
	}
	eventually(t, 5*time.Second, "control/tasks and control/encryptions listed on the second mount", func() bool {
		tasks, _ := os.ReadDir(b.path("control", "tasks"))
		reqs, _ := os.ReadDir(b.path("control", "encryptions"))
		return slices.ContainsFunc(tasks, func(e os.DirEntry) bool { return e.Name() == id+".json" }) &&
			slices.ContainsFunc(reqs, func(e os.DirEntry) bool { return e.Name() == "shared.json" })
	})

	// Cancel on the second mount: the first withdraws the outputs too.
	if err := os.WriteFile(b.path("control", "cancel"), []byte(id+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "CANCELED and outputs gone on the first mount", func() bool {
		_, err := os.Stat(a.path(seg...))
		return a.mgr.Status(id) == control.Canceled && errors.Is(err, os.ErrNotExist)
	})
	if v := a.wait(id); v.Status != control.Canceled {
		t.Fatalf("first mount: %s", v.Status)
	}

	// Unknown or malformed ids are ENOENT without harm.
	for _, name := range []string{"1234567890123456.json", "..json", "x.json"} {
		if _, err := os.ReadFile(b.path("control", "tasks", name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("control/tasks/%s: %v, want ENOENT", name, err)
		}
	}
}
