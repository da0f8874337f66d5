package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/store/miniotest"
)

// bench holds the run's state and the stack of things to undo.
type bench struct {
	cfg  *config
	tmp  string
	logs string

	mu        sync.Mutex
	undo      []func()
	cleanOnce sync.Once
	coldNote  string // set when the page cache could not be dropped

	minio *miniotest.Server
	ep    string // MinIO endpoint
	ak    string // MinIO credentials: passed to children in env or 0600 files
	sk    string
	st    *store.S3

	keys   *keyServer
	proxy  *latencyProxy // set in -latency-ms mode
	direct *store.S3     // straight to MinIO, for uploads (not measured)

	loadStart string // /proc/loadavg when the run began
	media     mediaSet
	fmp4      mediaSet // the same media remuxed to fMP4 HLS, for the CENC rows
	report    *report
}

func newBench(c *config) *bench { return &bench{cfg: c, report: &report{}} }

// atExit registers an undo step; cleanup runs them newest first.
func (b *bench) atExit(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.undo = append(b.undo, f)
}

// cleanup is safe to call twice and from the signal goroutine: a second
// caller waits until the first has finished undoing (sync.Once), so the
// process never exits halfway through.
func (b *bench) cleanup() {
	b.cleanOnce.Do(func() {
		b.mu.Lock()
		undo := b.undo
		b.mu.Unlock()
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	})
}

// proc is a child process we started; it is stopped by its own PID.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	once   sync.Once
}

// start runs a child with env added to ours, stdout+stderr to logs/NAME.log.
func (b *bench) start(name string, env []string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(b.logs, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	b.atExit(p.stop)
	return p, nil
}

// stop: SIGTERM, then SIGKILL after 10 s. Safe to call twice.
func (p *proc) stop() {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// resetHWM resets the peak RSS (VmHWM) so the next row's peak is its own.
func (p *proc) resetHWM() {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0)
}

// hwmMB is the process's peak resident set size since start or resetHWM.
func (p *proc) hwmMB() float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// dropCaches empties the kernel page cache (and dentries/inodes) so the next
// read is cold. Without root it notes that "cold" was not cold.
func (b *bench) dropCaches() {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil && b.coldNote == "" {
		b.coldNote = "page cache NOT dropped (" + err.Error() + "): cold figures are warm"
		fmt.Fprintln(os.Stderr, "mpcfsbench:", b.coldNote)
	}
}

// mountDir makes a mount point under tmp and arranges an unmount at exit
// (registered before the daemon so it runs after the daemon's own
// SIGTERM unmount has had its chance).
func (b *bench) mountDir(name string) (string, error) {
	dir := filepath.Join(b.tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b.atExit(func() { unmount(dir) })
	return dir, nil
}

// unmount detaches a FUSE mount if it is still there; lazily if busy.
func unmount(dir string) {
	if !isMounted(dir) {
		return
	}
	if exec.Command("fusermount3", "-u", dir).Run() != nil {
		exec.Command("fusermount3", "-u", "-z", dir).Run()
	}
}

func isMounted(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// waitMounted waits until dir is a mount point (and then until probe, if
// given, succeeds), failing early when the daemon exits.
func waitMounted(p *proc, dir string, probe string) error {
	deadline := time.Now().Add(mountWait)
	for time.Now().Before(deadline) {
		if !p.running() {
			return fmt.Errorf("%s exited before mounting (see its log)", p.name)
		}
		if isMounted(dir) {
			if probe == "" {
				return nil
			}
			if _, err := os.Stat(filepath.Join(dir, probe)); err == nil {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not mount %s within %v", p.name, dir, mountWait)
}

// mountWait bounds waitMounted; the catalogue rows raise it (mpcfs reads
// every task record before it mounts).
var mountWait = 60 * time.Second

func contextTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// startMinio starts MinIO (store/miniotest, the same launcher the tests
// use) on free 127.0.0.1 ports with a fresh data folder on disk, so cold
// reads of the raw row really come from disk.
func (b *bench) startMinio() error {
	if _, err := os.Stat(b.cfg.Minio); err != nil {
		return fmt.Errorf("no MinIO binary at %s: run `make minio`", b.cfg.Minio)
	}
	srv, err := miniotest.Launch(miniotest.Config{Bin: b.cfg.Minio, DataDir: filepath.Join(b.tmp, "minio-data"),
		LogPath: filepath.Join(b.logs, "minio.log"), AccessKey: "bench-" + randHex(4), SecretKey: randHex(16)})
	if srv != nil {
		b.atExit(srv.Stop)
	}
	if err != nil {
		return err
	}
	b.minio, b.ep, b.ak, b.sk, b.st = srv, srv.Endpoint, srv.AccessKey, srv.SecretKey, srv.Store()
	b.direct = b.st
	return nil
}

// awsEnv is how S3 credentials reach mpcfs: the environment, never argv.
func (b *bench) awsEnv() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + b.ak, "AWS_SECRET_ACCESS_KEY=" + b.sk}
}

// writeSecret writes a 0600 file in tmp (passwd files, key files).
func (b *bench) writeSecret(name string, data []byte) (string, error) {
	p := filepath.Join(b.tmp, name)
	return p, os.WriteFile(p, data, 0o600)
}

// have says whether a command is on PATH, trying a quiet apt-get install of
// pkg once when it is not.
func have(cmd, pkg string) bool {
	if _, err := exec.LookPath(cmd); err == nil {
		return true
	}
	if pkg == "" {
		return false
	}
	fmt.Fprintf(os.Stderr, "mpcfsbench: %s missing, trying apt-get install %s\n", cmd, pkg)
	inst := exec.Command("apt-get", "install", "-y", "-qq", pkg)
	inst.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	inst.Run()
	_, err := exec.LookPath(cmd)
	return err == nil
}
