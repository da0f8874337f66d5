package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// cpuUse is CPU time in seconds of the parts of a measurement: the serving
// daemon (or the tool's child processes), MinIO, and this process (the
// reader; for FUSE rows that includes the kernel's copies into its buffer).
// s3 is what MinIO wrote (wchar: mostly its responses), so perGB turns
// it into bytes served per byte read: read amplification.
type cpuUse struct{ daemon, minio, reader, s3 float64 }

func (a cpuUse) add(b cpuUse) cpuUse {
	return cpuUse{a.daemon + b.daemon, a.minio + b.minio, a.reader + b.reader, a.s3 + b.s3}
}

func (a cpuUse) sub(b cpuUse) cpuUse {
	return cpuUse{a.daemon - b.daemon, a.minio - b.minio, a.reader - b.reader, a.s3 - b.s3}
}

// perGB scales to CPU seconds per 10^9 bytes read.
func (a cpuUse) perGB(bytes int64) cpuUse {
	if bytes == 0 {
		return cpuUse{}
	}
	k := 1e9 / float64(bytes)
	return cpuUse{a.daemon * k, a.minio * k, a.reader * k, a.s3 / float64(bytes)}
}

func (a cpuUse) String() string {
	if a == (cpuUse{}) {
		return "-"
	}
	return fmt.Sprintf("%.2f / %.2f / %.2f", a.daemon, a.minio, a.reader)
}

// cpuNow snapshots CPU time; with no daemon, finished children count
// (openssl and ffmpeg rows).
func (b *bench) cpuNow(daemon *proc) cpuUse {
	var u cpuUse
	if b.minio != nil {
		u.minio = procCPU(b.minio.Pid())
		u.s3 = procIO(b.minio.Pid(), "wchar:")
	}
	u.reader = rusageCPU(syscall.RUSAGE_SELF)
	if daemon != nil {
		u.daemon = procCPU(daemon.cmd.Process.Pid)
	} else {
		u.daemon = rusageCPU(syscall.RUSAGE_CHILDREN)
	}
	return u
}

func rusageCPU(who int) float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(who, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// procCPU is utime+stime of a running process from /proc/PID/stat.
func procCPU(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux we run on.
const clockTicks = 100

// procIO reads one counter of /proc/PID/io.
func procIO(pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return n
		}
	}
	return 0
}
