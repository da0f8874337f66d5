package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/store/miniotest"
)

// TestFstabTLSProfile: the /etc/fstab form against MinIO serving TLS with a
// private CA, credentials from a profile of a shared credentials file:
// mount.mpcfs SOURCE DIR -o name=value,... with mount(8)'s and systemd's
// own options (_netdev, x-systemd.automount) ignored; it returns once the
// mount is ready. Negative controls: without the CA bundle the mount fails
// as a TLS failure naming --ca-bundle; a profile with a wrong secret fails
// naming the credentials file; an unreachable endpoint and a missing
// system bucket that cannot be made are named too.
func TestFstabTLSProfile(t *testing.T) {
	needFUSE(t)
	certsDir, caFile := miniotest.PrivateCA(t)
	srv := mediaMinIO(t, miniotest.Options{CertsDir: certsDir, CABundle: caFile})
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	os.WriteFile(creds, []byte(fmt.Sprintf("[mpcfs]\naws_access_key_id = %s\naws_secret_access_key = %s\n\n[stale]\naws_access_key_id = %s\naws_secret_access_key = not-it\n",
		srv.AccessKey, srv.SecretKey, srv.AccessKey)), 0o600)
	key := filepath.Join(dir, "master.key")
	noEnv := []string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "AWS_PROFILE=", "AWS_CA_BUNDLE=", "HOME=" + dir}
	mnt := mountDir(t)
	cleanupMount(t, mnt)
	opts := func(extra string) string {
		return "credentials-file=" + creds + ",master-key-file=" + key + ",s3-region=us-east-1,force-path-style,_netdev,x-systemd.automount,nofail" + extra
	}

	out, code := cli(t, noEnv, "mount.mpcfs", srv.Endpoint, mnt, "-o", opts(",profile=mpcfs"))
	if code == 0 || !strings.Contains(out, "TLS failure") || !strings.Contains(out, "--ca-bundle") {
		t.Errorf("without the CA: exit %d, %q", code, out)
	}
	out, code = cli(t, noEnv, "mount.mpcfs", srv.Endpoint, mnt, "-o", opts(",profile=stale,ca-bundle="+caFile))
	if code == 0 || !strings.Contains(out, "refused the credentials") || !strings.Contains(out, creds) {
		t.Errorf("a wrong secret in the profile: exit %d, %q", code, out)
	}
	if strings.Contains(out, "not-it") {
		t.Errorf("the error shows the secret: %q", out)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "https://" + l.Addr().String()
	l.Close()
	out, code = cli(t, noEnv, "mount.mpcfs", dead, mnt, "-o", opts(",profile=mpcfs,ca-bundle="+caFile))
	if code == 0 || !strings.Contains(out, "cannot reach the S3 endpoint") {
		t.Errorf("an unreachable endpoint: exit %d, %q", code, out)
	}
	if isMounted(mnt) {
		t.Fatalf("a failed mount left %s mounted", mnt)
	}

	out, code = cli(t, noEnv, "mount.mpcfs", srv.Endpoint, mnt, "-o", opts(",profile=mpcfs,ca-bundle="+caFile))
	if code != 0 {
		t.Fatalf("mount.mpcfs: exit %d, %q", code, out)
	}
	entries, err := os.ReadDir(filepath.Join(mnt, "buckets"))
	if err != nil || len(entries) != 2 {
		t.Fatalf("buckets/ right after mount.mpcfs returned: %v %v", entries, err)
	}
	id := submit(t, mnt, "tls.json", "tls")
	if st := waitTask(t, mnt, id); st != "SUCCEEDED" {
		t.Fatalf("task over TLS: %s", st)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "buckets", "public", "tls", "v0", "seg000.ts")); err != nil || len(b) == 0 || len(b)%16 != 0 {
		t.Errorf("reading an output over TLS: %d bytes, %v", len(b), err)
	}
	exec0("fusermount3", "-u", mnt)
	waitMounted(t, mnt, false, 10*time.Second)
}

// TestMasterKey: init is explicit and loud; a mount with another master key
// or without its key file refuses, naming the file; rekey re-seals every
// task so the new key serves the same bytes and the old one is refused; a
// first mount of a fresh store creates the key with a warning naming it;
// `mpcfs tasks` queries the store with and without a mount.
func TestMasterKey(t *testing.T) {
	needFUSE(t)
	srv := mediaMinIO(t, miniotest.Options{})
	env := s3Env(srv)
	dir := t.TempDir()
	k1, k2, k3 := filepath.Join(dir, "k1"), filepath.Join(dir, "k2"), filepath.Join(dir, "k3")
	store := []string{"--endpoint", srv.Endpoint}
	mnt := mountDir(t)
	cleanupMount(t, mnt)
	mount := func(key string, extra ...string) (string, int) {
		return cli(t, env, "", append(append([]string{"mount", mnt, "--daemon", "--master-key-file", key}, store...), extra...)...)
	}
	unmount := func() {
		exec0("fusermount3", "-u", mnt)
		waitMounted(t, mnt, false, 10*time.Second)
	}

	out, code := cli(t, env, "", append([]string{"init", "--master-key-file", k1}, store...)...)
	if code != 0 || !strings.Contains(out, k1) || !strings.Contains(out, "BACK IT UP") {
		t.Fatalf("init: exit %d, %q", code, out)
	}
	if out, code := cli(t, env, "", append([]string{"init", "--master-key-file", k1}, store...)...); code == 0 || !strings.Contains(out, "already exists") {
		t.Errorf("init twice: exit %d, %q", code, out)
	}
	if out, code := mount(k1); code != 0 {
		t.Fatalf("mount: %d %q", code, out)
	}
	id := submit(t, mnt, "k.json", "k")
	if st := waitTask(t, mnt, id); st != "SUCCEEDED" {
		t.Fatalf("task: %s", st)
	}
	seg := filepath.Join(mnt, "buckets", "public", "k", "v0", "seg001.ts")
	want, err := os.ReadFile(seg)
	if err != nil || len(want) == 0 {
		t.Fatalf("output: %v", err)
	}

	// mpcfs tasks, with the mount running.
	out, code = cli(t, env, "", append([]string{"tasks", "--json"}, store...)...)
	var list struct {
		Tasks []struct {
			TaskID string `json:"task_id"`
			Status string `json:"status"`
		} `json:"task_array"`
		Total int `json:"total"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || list.Total != 1 || list.Tasks[0].TaskID != id || list.Tasks[0].Status != "SUCCEEDED" {
		t.Errorf("tasks --json: exit %d, %q", code, out)
	}
	if strings.Contains(out, testKey) || strings.Contains(out, "sealed_key") {
		t.Errorf("tasks shows a key: %q", out)
	}
	unmount()

	// Another key, or none: refused, naming the file.
	os.WriteFile(k2, bytes.Repeat([]byte{7}, 32), 0o600)
	if out, code := mount(k2); code == 0 || !strings.Contains(out, k2) || !strings.Contains(out, "not the key") {
		t.Errorf("mount with another master key: exit %d, %q", code, out)
	}
	if out, code := mount(filepath.Join(dir, "lost")); code == 0 || !strings.Contains(out, "does not exist") || !strings.Contains(out, "backup") {
		t.Errorf("mount with a missing key file: exit %d, %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "lost")); err == nil {
		t.Errorf("a mount of a store with tasks created a new key file")
	}
	if isMounted(mnt) {
		t.Fatal("a refused mount is mounted")
	}

	// mpcfs tasks without a mount, with filters.
	out, code = cli(t, env, "", append([]string{"tasks", "--status", "succeeded", "--since", "1h"}, store...)...)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "TASK_ID") {
		t.Errorf("tasks --status --since: exit %d, %q", code, out)
	}
	future := time.Now().UTC().Add(time.Hour).Format("20060102150405")
	if out, code := cli(t, env, "", append([]string{"tasks", "--since", future}, store...)...); code != 0 || strings.Contains(out, id) {
		t.Errorf("tasks --since the future lists %q (exit %d)", out, code)
	}
	if out, _ := cli(t, env, "", append([]string{"tasks", "--status", "FAILED"}, store...)...); strings.Contains(out, id) {
		t.Errorf("tasks --status FAILED lists the SUCCEEDED task: %q", out)
	}

	// Rotation.
	out, code = cli(t, env, "", append([]string{"rekey", k1, k3}, store...)...)
	if code != 0 || !strings.Contains(out, "re-sealed 1 tasks") {
		t.Fatalf("rekey: exit %d, %q", code, out)
	}
	if out, code := mount(k1); code == 0 || !strings.Contains(out, "not the key") {
		t.Errorf("mount with the old key after rekey: exit %d, %q", code, out)
	}
	if out, code := mount(k3); code != 0 {
		t.Fatalf("mount with the new key: exit %d, %q", code, out)
	}
	if st := waitTask(t, mnt, id); st != "SUCCEEDED" {
		t.Errorf("after rekey the task is %s", st)
	}
	if got, err := os.ReadFile(seg); err != nil || !bytes.Equal(got, want) {
		t.Errorf("after rekey the output differs (%v)", err)
	}
	unmount()
	if out, code := cli(t, env, "", append([]string{"rekey", k1, k3}, store...)...); code != 0 || !strings.Contains(out, "re-sealed 0 tasks (1 already") {
		t.Errorf("rekey again: exit %d, %q", code, out)
	}

	// A first mount of a fresh store creates the key, loudly.
	fresh := filepath.Join(dir, "fresh.key")
	logFile := filepath.Join(dir, "fresh.log")
	if out, code := mount(fresh, "--system-bucket", "fresh-system", "--log-file", logFile); code != 0 {
		t.Fatalf("first mount: exit %d, %q", code, out)
	}
	unmount()
	logText, _ := os.ReadFile(logFile)
	if !strings.Contains(string(logText), "NEW MASTER KEY") || !strings.Contains(string(logText), fresh) {
		t.Errorf("the first mount's log does not announce the new key file:\n%s", logText)
	}
}

// TestObservability: JSON logs (start line naming store, system bucket,
// master key file and tasks loaded; accepted and rejected requests with
// name, task id and error code; never the key) and Prometheus metrics;
// --log-level warn drops the info lines (the control); sd_notify says
// READY=1 once mounted and STOPPING=1 on SIGTERM.
func TestObservability(t *testing.T) {
	needFUSE(t)
	srv := mediaMinIO(t, miniotest.Options{})
	dir := t.TempDir()
	mnt := mountDir(t)
	cleanupMount(t, mnt)
	logFile := filepath.Join(dir, "mpcfs.log")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	metricsAddr := l.Addr().String()
	l.Close()
	sock := filepath.Join(dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	notes := make(chan string, 8)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := notify.ReadFromUnix(buf)
			if err != nil {
				return
			}
			notes <- string(buf[:n])
		}
	}()
	fg := startForeground(t, append(s3Env(srv), "NOTIFY_SOCKET="+sock), mnt, "--endpoint", srv.Endpoint, "--master-key-file", filepath.Join(dir, "k"),
		"--log-format", "json", "--log-file", logFile, "--metrics-addr", metricsAddr)
	select {
	case n := <-notes:
		if !strings.Contains(n, "READY=1") || !isMounted(mnt) {
			t.Errorf("first notification %q, mounted %v", n, isMounted(mnt))
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no READY=1; output:\n%s", fg.out.String())
	}
	id := submit(t, mnt, "good.json", "obs")
	os.WriteFile(filepath.Join(mnt, "control", "encryptions", "bad.json"), []byte(`{"input":{}}`), 0o600)
	waitTask(t, mnt, id)
	seg, err := os.ReadFile(filepath.Join(mnt, "buckets", "public", "obs", "v0", "seg000.ts"))
	if err != nil {
		t.Fatal(err)
	}
	os.ReadFile(filepath.Join(mnt, "buckets", "public", "obs", "v0", "index.m3u8"))

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mpcfs_tasks{status="SUCCEEDED"} 1`,
		fmt.Sprintf(`mpcfs_read_bytes_total{kind="segment"} %d`, len(seg)),
		`mpcfs_read_bytes_total{kind="playlist"}`,
		`mpcfs_read_duration_seconds_bucket{kind="segment",le=`,
		`mpcfs_store_requests_total{op="get"}`,
		`mpcfs_open_files{kind="segment"}`, // 0 once the kernel has sent RELEASE
		`mpcfs_warm_stream_hits_total`,
		`mpcfs_warm_stream_evictions_total`,
		`mpcfs_requests_total{result="accepted"} 1`,
		`mpcfs_requests_total{result="rejected"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(string(body), testKey) {
		t.Errorf("metrics hold the key")
	}

	fg.signal(syscall.SIGTERM)
	fg.waitExit(t, 30*time.Second)
	select {
	case n := <-notes:
		if !strings.Contains(n, "STOPPING=1") {
			t.Errorf("notification on SIGTERM: %q", n)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("no STOPPING=1")
	}
	logText, _ := os.ReadFile(logFile)
	var start map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(logText)), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON log line: %q", line)
			continue
		}
		if rec["msg"] == "mounted" {
			start = rec
		}
	}
	if start == nil || start["store"] != "s3 "+srv.Endpoint || start["system_bucket"] != "mpcfs-system" ||
		start["master_key_file"] != filepath.Join(dir, "k") || start["tasks_loaded"] != 0.0 {
		t.Errorf("start line: %v", start)
	}
	for _, want := range []string{"request good.json accepted: task " + id, "request bad.json rejected: MPC.10202", "task " + id + " SUCCEEDED"} {
		if !strings.Contains(string(logText), want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	if strings.Contains(string(logText), testKey) || strings.Contains(string(logText), srv.SecretKey) {
		t.Errorf("the log holds a secret:\n%s", logText)
	}

	// --log-level warn: no info lines.
	warnLog := filepath.Join(dir, "warn.log")
	if out, code := cli(t, s3Env(srv), "", "mount", mnt, "--daemon", "--endpoint", srv.Endpoint, "--master-key-file", filepath.Join(dir, "k"), "--log-level", "warn", "--log-file", warnLog); code != 0 {
		t.Fatalf("mount --log-level warn: %d %q", code, out)
	}
	exec0("fusermount3", "-u", mnt)
	waitMounted(t, mnt, false, 10*time.Second)
	if b, _ := os.ReadFile(warnLog); strings.Contains(string(b), "mounted") {
		t.Errorf("--log-level warn logged info lines:\n%s", b)
	}
	for _, want := range []string{`"level":"WARN","msg":"request bad.json rejected`, `"level":"INFO","msg":"request good.json accepted`} {
		if !strings.Contains(string(logText), want) {
			t.Errorf("the JSON log lacks %s", want)
		}
	}
}

// TestFstabLine: an /etc/fstab line (read from a file given to mount -T)
// mounted with mount(8), which runs /sbin/mount.mpcfs (a link to the
// binary under test, made for the test when none is installed), and
// unmounted with umount(8). The control: the same line with a misspelt
// option fails and mounts nothing.
func TestFstabLine(t *testing.T) {
	needFUSE(t)
	need(t, "mount(8) (util-linux)", haveCmd("mount") && haveCmd("umount"))
	const helper = "/sbin/mount.mpcfs"
	if target, err := os.Readlink(helper); err == nil && strings.Contains(target, "mpcfs-bin-") {
		os.Remove(helper) // left by an interrupted run of this test
	}
	if _, err := os.Lstat(helper); err == nil {
		t.Skipf("%s is installed; not replacing it", helper)
	}
	if err := os.Symlink(mpcfsBin, helper); err != nil {
		need(t, "a writable /sbin for mount.mpcfs", false)
	}
	t.Cleanup(func() { os.Remove(helper) })
	dir := t.TempDir()
	mnt := mountDir(t)
	cleanupMount(t, mnt)
	os.MkdirAll(filepath.Join(dir, "store", "media"), 0o755)
	line := func(opts string) string {
		return fmt.Sprintf("%s %s mpcfs %s 0 0\n", filepath.Join(dir, "store"), mnt, opts)
	}
	fstab := filepath.Join(dir, "fstab")
	opts := "_netdev,nofail,x-systemd.automount,master-key-file=" + filepath.Join(dir, "master.key") + ",region=region1,log-file=" + filepath.Join(dir, "mpcfs.log")
	os.WriteFile(fstab, []byte(line(opts+",no-such-option=1")), 0o644)
	if out, err := exec.Command("mount", "-T", fstab, mnt).CombinedOutput(); err == nil || !strings.Contains(string(out), "no-such-option") {
		t.Errorf("a misspelt option: %v, %s", err, out)
	}
	if isMounted(mnt) {
		t.Fatal("a failed mount left a mount")
	}
	os.WriteFile(fstab, []byte(line(opts)), 0o644)
	if out, err := exec.Command("mount", "-T", fstab, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -T fstab: %v, %s", err, out)
	}
	if entries, err := os.ReadDir(filepath.Join(mnt, "buckets")); err != nil || len(entries) != 1 || entries[0].Name() != "media" {
		t.Errorf("buckets/ of the fstab mount: %v %v", entries, err)
	}
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Errorf("umount: %v, %s", err, out)
	}
	waitMounted(t, mnt, false, 10*time.Second)
}

// TestMountFuse3: a line of type fuse.mpcfs goes through mount.fuse3,
// which runs `mpcfs SOURCE DIR -o OPTS` from PATH and spells options with
// underscores (allow_other). The control: an option mpcfs lacks fails.
func TestMountFuse3(t *testing.T) {
	needFUSE(t)
	need(t, "mount.fuse3 (fuse3)", haveCmd("mount.fuse3"))
	dir := t.TempDir()
	mnt := mountDir(t)
	cleanupMount(t, mnt)
	os.MkdirAll(filepath.Join(dir, "store", "media"), 0o755)
	path := "PATH=" + filepath.Dir(mpcfsBin) + ":" + os.Getenv("PATH")
	mount := func(opts string) (string, error) {
		cmd := exec.Command("mount.fuse3", filepath.Join(dir, "store"), mnt, "-t", "fuse.mpcfs", "-o", opts)
		cmd.Env = append(os.Environ(), path)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	opts := "_netdev,nofail,allow_other,master_key_file=" + filepath.Join(dir, "master.key")
	if out, err := mount(opts + ",frobnicate"); err == nil || !strings.Contains(out, "frobnicate") {
		t.Errorf("an unknown option: %v %s", err, out)
	}
	if out, err := mount(opts); err != nil {
		t.Fatalf("mount.fuse3: %v %s", err, out)
	}
	if entries, err := os.ReadDir(filepath.Join(mnt, "buckets")); err != nil || len(entries) != 1 {
		t.Errorf("buckets/: %v %v", entries, err)
	}
	exec0("fusermount3", "-u", mnt)
	waitMounted(t, mnt, false, 10*time.Second)
}
