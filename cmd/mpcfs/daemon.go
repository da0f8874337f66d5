package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"log/syslog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// daemonReadyEnv tells a re-executed daemon which file descriptor to
// report readiness on (the write end of a pipe its parent reads).
const daemonReadyEnv = "MPCFS_DAEMON_READY_FD"

// daemonStartTimeout bounds how long `mount --daemon` waits for the mount.
const daemonStartTimeout = 3 * time.Minute

// daemonize runs this command again in a new session with --daemon still
// set, and returns when that process reports the mount ready (nil) or
// failed (its error). Its stdin and stdout are /dev/null, so callers reading
// our output (mount(8), scripts) are not held open by the daemon.
func daemonize(c *mountConfig) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), daemonReadyEnv+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	w.Close()
	pid := cmd.Process.Pid
	cmd.Process.Release()
	type answer struct {
		msg string
		err error
	}
	got := make(chan answer, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(r, 64<<10))
		got <- answer{string(b), err}
	}()
	select {
	case a := <-got:
		msg := strings.TrimSpace(a.msg)
		if msg == "ready" {
			return nil
		}
		if msg == "" {
			msg = "the daemon exited before the mount was ready"
		}
		return errors.New(msg)
	case <-time.After(daemonStartTimeout):
		return fmt.Errorf("the daemon (pid %d) did not report the mount ready within %v", pid, daemonStartTimeout)
	}
}

// reportReady tells a waiting `mount --daemon` parent the outcome.
func reportReady(err error) {
	fd := os.Getenv(daemonReadyEnv)
	if fd == "" {
		return
	}
	os.Unsetenv(daemonReadyEnv)
	f := os.NewFile(3, "ready")
	if fd != "3" || f == nil {
		return
	}
	msg := "ready"
	if err != nil {
		msg = err.Error()
	}
	fmt.Fprintln(f, msg)
	f.Close()
}

// sdNotify sends a systemd notification (Type=notify units) when
// $NOTIFY_SOCKET is set: the sd_notify(3) protocol, one datagram.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if strings.HasPrefix(path, "@") { // abstract socket
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}

// newLogger makes the process's logger: text or JSON (log/slog) at a level,
// to a file, stderr, or (a daemon without --log-file) syslog.
func newLogger(level, format, file string, daemon bool) (*slog.Logger, func(), error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", level)}
	}
	var w io.Writer = os.Stderr
	closeFn := func() {}
	switch {
	case file != "":
		f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("--log-file: %w", err)
		}
		w, closeFn = f, func() { f.Close() }
	case daemon:
		if sw, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "mpcfs"); err == nil {
			w, closeFn = sw, func() { sw.Close() }
		} else {
			w = io.Discard
		}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, nil, usageError{fmt.Sprintf("--log-format %q: want text or json", format)}
	}
	return slog.New(h), closeFn, nil
}

// warnWords mark lines of the packages' *log.Logger that report a problem
// (store errors, failed tasks, refused requests and files): they are
// logged at WARN so --log-level warn keeps them.
var warnWords = []string{"error", "fail", "FAILED", "cannot", "unavailable", "refus", "rejected", "skipping", "not saved", "retrying", "does not open", "stale", ": EIO"}

// levelWriter turns the lines of a *log.Logger (one Write per line) into
// slog records, at WARN for problems and INFO otherwise.
type levelWriter struct{ lg *slog.Logger }

func (w levelWriter) Write(p []byte) (int, error) {
	msg := strings.TrimRight(string(p), "\n")
	level := slog.LevelInfo
	for _, word := range warnWords {
		if strings.Contains(msg, word) {
			level = slog.LevelWarn
			break
		}
	}
	w.lg.Log(context.Background(), level, msg)
	return len(p), nil
}

// stdLogger is the *log.Logger handed to the control and fs packages.
func stdLogger(lg *slog.Logger) *log.Logger { return log.New(levelWriter{lg}, "", 0) }
