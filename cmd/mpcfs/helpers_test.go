package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/internal/sample"
	"github.com/mpcfs/mpcfs/store/miniotest"
)

// These tests run the built mpcfs binary as an admin would: real MinIO,
// real FUSE mounts, real signals, mount.mpcfs, --daemon, sd_notify.

var mpcfsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mpcfs-bin-")
	if err != nil {
		panic(err)
	}
	mpcfsBin = filepath.Join(dir, "mpcfs")
	out, err := exec.Command("go", "build", "-o", mpcfsBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building mpcfs: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if media.dir != "" {
		os.RemoveAll(media.dir)
	}
	os.Exit(code)
}

func needFUSE(t testing.TB) {
	_, err := os.Stat("/dev/fuse")
	need(t, "/dev/fuse", err == nil)
	need(t, "fusermount3 (apt-get install fuse3)", haveCmd("fusermount3"))
	need(t, "root (mounts with allow_other, read-ahead)", os.Geteuid() == 0)
}

// cli runs the binary (argv0 overrides its name, for mount.mpcfs) and
// returns its output and exit code.
func cli(t *testing.T, env []string, argv0 string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mpcfsBin, args...)
	if argv0 != "" {
		cmd.Args[0] = argv0
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running mpcfs %v: %v", args, err)
	}
	return string(out), code
}

// mountedAt is the code under test's own reading of /proc/self/mountinfo.
func isMounted(dir string) bool { _, ok := mountedAt(dir); return ok }

func waitMounted(t *testing.T, dir string, want bool, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if isMounted(dir) == want {
			return
		}
	}
	t.Fatalf("%s mounted=%v after %v, want %v", dir, isMounted(dir), within, want)
}

// cleanupMount lazily unmounts dir when the test ends (a daemon then exits).
func cleanupMount(t *testing.T, dir string) {
	t.Cleanup(func() {
		if isMounted(dir) {
			exec.Command("fusermount3", "-u", "-z", dir).Run()
		}
	})
}

// mountDir is an empty mount point under a fresh folder.
func mountDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// foreground is `mpcfs mount` running in the foreground.
type foreground struct {
	cmd    *exec.Cmd
	exited chan struct{}
	out    *strings.Builder
}

func startForeground(t *testing.T, env []string, args ...string) *foreground {
	t.Helper()
	cmd := exec.Command(mpcfsBin, append([]string{"mount"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: out}, &lockedWriter{w: out}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fg := &foreground{cmd: cmd, exited: make(chan struct{}), out: out}
	go func() { cmd.Wait(); close(fg.exited) }()
	t.Cleanup(func() {
		select {
		case <-fg.exited:
		default:
			cmd.Process.Kill()
			<-fg.exited
		}
	})
	return fg
}

// waitExit waits for the process to end and returns its exit code.
func (fg *foreground) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-fg.exited:
		return fg.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("mpcfs still running after %v; output:\n%s", within, fg.out.String())
	}
	return -1
}

func (fg *foreground) signal(s syscall.Signal) { fg.cmd.Process.Signal(s) }

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// media is one ffmpeg-made ladder shared by the tests of this package.
var media struct {
	once sync.Once
	dir  string
	err  error
}

// mediaMinIO starts MinIO (options as given) with the ladder in
// media/vod/ and an empty public bucket.
func mediaMinIO(t *testing.T, o miniotest.Options) *miniotest.Server {
	t.Helper()
	need(t, "ffmpeg (apt-get install ffmpeg)", haveCmd("ffmpeg"))
	media.once.Do(func() {
		media.dir, media.err = os.MkdirTemp("", "mpcfs-media-")
		if media.err == nil {
			_, media.err = sample.MakeLadder(media.dir, 6)
		}
	})
	if media.err != nil {
		t.Fatal(media.err)
	}
	srv := miniotest.StartWith(t, o)
	srv.MakeBucket(t, "media")
	srv.MakeBucket(t, "public")
	err := filepath.WalkDir(media.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(media.dir, p)
		return srv.Store().Put(context.Background(), "media", "vod/"+filepath.ToSlash(rel), data)
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// testKey is the content key of the test requests (base64 of 16 bytes).
const testKey = "MDEyMzQ1Njc4OWFiY2RlZg=="

func requestJSON(output string) []byte {
	b, _ := json.Marshal(map[string]any{
		"input":  map[string]any{"bucket": "media", "location": "region1", "object": "vod/master.m3u8"},
		"output": map[string]any{"bucket": "public", "location": "region1", "object": output},
		"encryption": map[string]any{"hls_encrypt": map[string]any{
			"key": testKey, "url": "https://keys.example/k1", "algorithm": "AES-128-CBC"}},
	})
	return b
}

// submit writes a request into the mount and returns the task id.
func submit(t *testing.T, mnt, name, output string) string {
	t.Helper()
	p := filepath.Join(mnt, "control", "encryptions", name)
	if err := os.WriteFile(p, requestJSON(output), 0o600); err != nil {
		t.Fatalf("submitting %s: %v", name, err)
	}
	b, _ := os.ReadFile(p)
	var r struct {
		TaskID string `json:"task_id"`
	}
	if json.Unmarshal(b, &r) != nil || r.TaskID == "" {
		t.Fatalf("%s: response %s", name, b)
	}
	return r.TaskID
}

// waitTask waits for a final status and returns it.
func waitTask(t *testing.T, mnt, id string) string {
	t.Helper()
	var v struct{ Status, Description string }
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(mnt, "control", "tasks", id+".json"))
		if err != nil {
			t.Fatalf("task %s: %v", id, err)
		}
		json.Unmarshal(b, &v)
		switch v.Status {
		case "SUCCEEDED", "FAILED", "CANCELED":
			return v.Status
		}
	}
	t.Fatalf("task %s still %s", id, v.Status)
	return ""
}

// s3Env is the environment a mount of srv needs: credentials in the
// environment (the AWS chain's first link).
func s3Env(srv *miniotest.Server) []string {
	return []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "AWS_PROFILE=", "AWS_SESSION_TOKEN=", "AWS_CA_BUNDLE="}
}

// execIn makes a command of the binary in dir with env: "NAME" unsets a
// variable, "NAME=value" sets it.
func execIn(dir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(mpcfsBin, args...)
	cmd.Dir = dir
	vars := os.Environ()
	for _, e := range env {
		name, _, set := strings.Cut(e, "=")
		kept := vars[:0:0]
		for _, v := range vars {
			if !strings.HasPrefix(v, name+"=") {
				kept = append(kept, v)
			}
		}
		vars = kept
		if set {
			vars = append(vars, e)
		}
	}
	cmd.Env = vars
	return cmd
}

func exec0(name string, args ...string) { exec.Command(name, args...).Run() }
