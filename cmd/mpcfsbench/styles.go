package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mpcfs/mpcfs/store/miniotest"
)

// A reader style is one way users read files off a mount: the tool's own
// read size, its own process, its own page-cache path (sendfile). Each
// style reads every segment of a target once, cold; the figure is
// compared with the raw GET of the same objects and with s3fs read the
// same way, in the same run.
type readerStyle struct {
	name string
	// read reads the segments under dir (and dir/index.m3u8 for the
	// playlist readers); it returns the bytes read.
	read func(b *bench, dir string, segs []string) (int64, error)
	// concurrent marks the style whose raw reference is the concurrent
	// raw GET, not the serial one.
	concurrent bool
	// playerDecrypts marks a reader that decrypts the CBC output itself;
	// it also reads the plaintext passthrough.
	playerDecrypts bool
}

// styles are measured in this order; the names are the table's.
var styles = []readerStyle{
	{name: "read() 1 MiB (in-process)", read: styleRead1M},
	{name: "cat (128 KiB reads)", read: styleCat},
	{name: "cp to /dev/null, one per segment", read: styleCp},
	{name: "dd bs=1M", read: styleDd},
	{name: "nginx sendfile + HTTP client", read: styleNginx},
	{name: "ffmpeg -c copy of the playlist", read: styleFfmpeg, playerDecrypts: true},
	{name: "16 concurrent readers (1 MiB reads)", read: styleConcurrent, concurrent: true},
}

// styleTarget is what a style reads: a mount folder holding the segments
// under their source names and index.m3u8.
type styleTarget struct {
	name   string
	dir    string
	daemon *proc
}

// styleRow is one style on one target (or on the raw GET).
type styleRow struct {
	style, target string
	mbs           []float64 // cold MB/s per run
	cpu           cpuUse    // CPU seconds per GB, cold passes
	reqs          *reqStats // FUSE read requests the daemon got (diagnostic pass)
	gets          getStats  // what the daemon fetched from the store in that pass
	raNote        string    // the mount's read_ahead_kb when measured
	note          string
}

// stylesRows measures every style on s3fs and mpcfs CBC, each against the
// raw GET of the run (one curl process, serial; concurrent GETs for the
// concurrent style).
func (b *bench) stylesRows(m *mpcfsMount) error {
	if err := b.rawCurlRow(); err != nil {
		return err
	}
	if err := b.rawInProcessRow(); err != nil {
		return err
	}
	targets := []styleTarget{{name: cbcTarget, dir: filepath.Join(m.dir, "buckets", outBucket, "cbc"), daemon: m.proc}}
	if have("s3fs", "s3fs") {
		p, dir, err := b.mountS3fs("mnt-s3fs-styles")
		if err != nil {
			return fmt.Errorf("s3fs for the reader styles: %w", err)
		}
		defer b.stopMount(p, dir)
		targets = append(targets, styleTarget{name: "s3fs", dir: filepath.Join(dir, strings.TrimSuffix(mediaPrefix, "/")), daemon: p})
	} else {
		b.report.notes = append(b.report.notes, "reader styles: s3fs not installed, so no s3fs column")
	}
	// ffmpeg decrypts what it reads from the CBC output (s3fs serves
	// plaintext): the passthrough of the same media shows the cost of the
	// mount apart from ffmpeg's decryption.
	targets = append(targets, styleTarget{name: plainTarget, dir: filepath.Join(m.dir, "buckets", mediaBucket, mediaPrefix), daemon: m.proc})
	ra := mountReadAhead(m.dir)
	for _, st := range styles {
		if st.concurrent {
			if err := b.rawConcurrentRow(st.name); err != nil {
				return err
			}
		}
		for _, t := range targets {
			if t.name == plainTarget && !st.playerDecrypts {
				continue
			}
			r := &styleRow{style: st.name, target: t.name}
			if t.daemon == m.proc {
				r.raNote = ra
			}
			if t.name == plainTarget {
				r.note = "no decryption in the reader"
			}
			if err := b.styleRuns(r, t.daemon, nil, func() (int64, error) { return st.read(b, t.dir, b.media.segs) }); err != nil {
				return err
			}
			b.report.styles = append(b.report.styles, r)
		}
	}
	return nil
}

// styleRuns measures fn cold Runs times and sums its CPU per GB: the
// daemon, MinIO, and the reader (this process plus every child it waited
// for, plus extra, a server such as nginx that is still running).
func (b *bench) styleRuns(r *styleRow, daemon, extra *proc, fn func() (int64, error)) error {
	var use cpuUse
	var bytes int64
	if daemon != nil {
		daemon.resetHWM()
	}
	for i := range b.cfg.Runs {
		b.dropCaches()
		var stopPerf func()
		if i == 0 && daemon != nil && r.target == cbcTarget {
			stopPerf = b.perfProc("style "+r.style, daemon)
		}
		c0 := b.readerCPU(daemon, extra)
		t := time.Now()
		n, err := fn()
		elapsed := time.Since(t)
		c1 := b.readerCPU(daemon, extra)
		if stopPerf != nil {
			stopPerf()
		}
		if err != nil {
			return fmt.Errorf("%s on %s (run %d): %w", r.style, r.target, i+1, err)
		}
		r.mbs = append(r.mbs, float64(n)/1e6/elapsed.Seconds())
		use = use.add(c1.sub(c0))
		bytes += n
	}
	r.cpu = use.perGB(bytes)
	rss := ""
	if daemon != nil {
		// The daemon's peak over this style's runs (with the styles
		// before it sharing the daemon, what they left resident counts).
		rss = fmt.Sprintf("; daemon peak RSS %.0f MB", daemon.hwmMB())
		r.note = strings.TrimPrefix(r.note+rss, "; ")
	}
	fmt.Fprintf(os.Stderr, "  %-38s %-18s cold %6.0f MB/s (runs: %s; CPU s/GB daemon/MinIO/reader %v%s)\n",
		r.style, r.target, median(r.mbs), runList(r.mbs), r.cpu, rss)
	return nil
}

// readerCPU is cpuNow with the reader's children (and extra) counted as
// the reader.
func (b *bench) readerCPU(daemon, extra *proc) cpuUse {
	u := b.cpuNow(daemon)
	if daemon == nil {
		u.daemon = 0 // cpuNow counts children as the daemon when there is none
	}
	u.reader += rusageCPU(syscall.RUSAGE_CHILDREN)
	if extra != nil {
		u.reader += procCPU(extra.cmd.Process.Pid)
	}
	return u
}

// rawCurlRow: one curl process GETs every segment in order over one
// connection (presigned URLs from a 0600 config file, never argv).
func (b *bench) rawCurlRow() error {
	if !have("curl", "curl") {
		return fmt.Errorf("curl is needed for the raw GET reference")
	}
	cfg, err := b.curlConfig()
	if err != nil {
		return err
	}
	r := &styleRow{style: "raw GET", target: rawCurlName}
	if err := b.styleRuns(r, nil, nil, func() (int64, error) {
		out, err := exec.Command("curl", "-sS", "--fail", "-K", cfg, "-w", "%{size_download}\n").Output()
		if err != nil {
			return 0, fmt.Errorf("curl: %v", err)
		}
		var total int64
		for _, f := range strings.Fields(string(out)) {
			var n int64
			fmt.Sscan(f, &n)
			total += n
		}
		return total, nil
	}); err != nil {
		return err
	}
	b.report.styles = append(b.report.styles, r)
	return nil
}

const (
	rawCurlName  = "raw GET, one curl process"
	rawInProName = "raw GET, in-process (1 MiB reads)"
	rawConcName  = "raw GET, concurrent"
	cbcTarget    = "mpcfs AES-128-CBC"
	plainTarget  = "mpcfs plaintext passthrough"
)

// rawInProcessRow: the same objects GET whole, in order, by this process
// with the client library mpcfs uses (1 MiB reads of the body).
func (b *bench) rawInProcessRow() error {
	keys := joinKeys(mediaPrefix, b.media.segs)
	r := &styleRow{style: "raw GET", target: rawInProName}
	err := b.styleRuns(r, nil, nil, func() (int64, error) { return b.readS3(mediaBucket, keys) })
	b.report.styles = append(b.report.styles, r)
	return err
}

func joinKeys(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}

// rawConcurrentRow is the concurrent style's reference: Readers in-process
// clients GETting whole objects.
func (b *bench) rawConcurrentRow(style string) error {
	r := &styleRow{style: style, target: rawConcName}
	err := b.styleRuns(r, nil, nil, func() (int64, error) {
		return concurrentBytes(b.cfg.Readers, len(b.media.segs), func(i int, buf []byte) (int64, error) {
			return b.getS3(mediaBucket, mediaPrefix+b.media.segs[i], buf)
		})
	})
	b.report.styles = append(b.report.styles, r)
	return err
}

// curlConfig writes presigned GET URLs of the segments (valid one hour),
// one `url`/`output` pair per segment.
func (b *bench) curlConfig() (string, error) {
	u, err := url.Parse(b.ep)
	if err != nil {
		return "", err
	}
	cl, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(b.ak, b.sk, ""), Region: "us-east-1"})
	if err != nil {
		return "", err
	}
	var s strings.Builder
	for _, seg := range b.media.segs {
		pu, err := cl.PresignedGetObject(context.Background(), mediaBucket, mediaPrefix+seg, time.Hour, nil)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&s, "url = %q\noutput = \"/dev/null\"\n", pu.String())
	}
	return b.writeSecret("curl-raw.conf", []byte(s.String()))
}

func styleRead1M(b *bench, dir string, segs []string) (int64, error) {
	return readFiles(joinAll(dir, segs))
}

// styleCat: one GNU cat of every segment; its read size is its own (128
// KiB, coreutils' io_blksize).
func styleCat(b *bench, dir string, segs []string) (int64, error) {
	paths := joinAll(dir, segs)
	if err := runQuiet("cat", paths...); err != nil {
		return 0, err
	}
	return sizeOf(paths)
}

func styleCp(b *bench, dir string, segs []string) (int64, error) {
	paths := joinAll(dir, segs)
	for _, p := range paths {
		if err := runQuiet("cp", p, os.DevNull); err != nil {
			return 0, err
		}
	}
	return sizeOf(paths)
}

func styleDd(b *bench, dir string, segs []string) (int64, error) {
	paths := joinAll(dir, segs)
	for _, p := range paths {
		if err := runQuiet("dd", "if="+p, "of="+os.DevNull, "bs=1M", "status=none"); err != nil {
			return 0, err
		}
	}
	return sizeOf(paths)
}

// styleFfmpeg re-muxes the playlist with -c copy to /dev/null: ffmpeg's
// HLS demuxer reads the segments in order (and, for an encrypted output,
// fetches the key from the bench's key server on 127.0.0.1 and decrypts).
func styleFfmpeg(b *bench, dir string, segs []string) (int64, error) {
	if err := runQuiet("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-protocol_whitelist", "file,http,tcp,crypto", "-i", filepath.Join(dir, "index.m3u8"),
		"-map", "0", "-c", "copy", "-f", "mpegts", "-y", os.DevNull); err != nil {
		return 0, err
	}
	return sizeOf(joinAll(dir, segs))
}

func styleConcurrent(b *bench, dir string, segs []string) (int64, error) {
	paths := joinAll(dir, segs)
	return concurrentBytes(b.cfg.Readers, len(paths), func(i int, buf []byte) (int64, error) { return readFile(paths[i], buf) })
}

// concurrentBytes is concurrent() returning the bytes read.
func concurrentBytes(w, items int, read func(i int, buf []byte) (int64, error)) (int64, error) {
	var total int64
	var mu = make(chan struct{}, 1)
	_, err := concurrent(w, items, func(i int, buf []byte) (int64, error) {
		n, err := read(i, buf)
		mu <- struct{}{}
		total += n
		<-mu
		return n, err
	})
	return total, err
}

// styleNginx serves dir with nginx (sendfile on, one process) and GETs
// every segment over one keep-alive connection.
func styleNginx(b *bench, dir string, segs []string) (int64, error) {
	srv, addr, err := b.startNginx(dir, false)
	if err != nil {
		return 0, err
	}
	defer srv.stop()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
	buf := make([]byte, readBuf)
	var total int64
	for _, s := range segs {
		resp, err := client.Get("http://" + addr + "/" + s)
		if err != nil {
			return total, err
		}
		n, err := drain(resp.Body, buf)
		resp.Body.Close()
		total += n
		if err != nil {
			return total, err
		}
		if resp.StatusCode != http.StatusOK {
			return total, fmt.Errorf("nginx: GET %s: %s (see logs/nginx-error.log)", s, resp.Status)
		}
	}
	return total, nil
}

// startNginx serves root with nginx (static files, sendfile) on a free
// 127.0.0.1 port: as one process (master_process off, so its CPU is that
// one PID's) for the reader styles, or perCore as users run it (a worker
// per core, for the HTTP load rows). Workers run as root, since the mount
// is owner-only. Its start is a few milliseconds.
func (b *bench) startNginx(root string, perCore bool) (*proc, string, error) {
	if !have("nginx", "nginx-light") {
		return nil, "", fmt.Errorf("nginx not installed (Debian nginx-light)")
	}
	addr, err := miniotest.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	procs := "master_process off;\nworker_processes 1;"
	if perCore {
		procs = "user root;\nworker_processes auto;"
	}
	prefix := filepath.Join(b.tmp, "nginx")
	os.MkdirAll(prefix, 0o755)
	conf := fmt.Sprintf(`daemon off;
%[5]s
error_log %[1]s/nginx-error.log warn;
pid %[2]s/nginx.pid;
events { worker_connections 1024; }
http {
	sendfile on;
	tcp_nopush on;
	access_log off;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	types { video/mp2t ts; application/vnd.apple.mpegurl m3u8; }
	server { listen %[3]s; root %[4]s; }
}
`, mustAbs(b.logs), prefix, addr, root, procs)
	cf := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	p, err := b.start("nginx", nil, "nginx", "-p", prefix, "-c", cf, "-e", filepath.Join(mustAbs(b.logs), "nginx-error.log"))
	if err != nil {
		return nil, "", err
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if !p.running() {
			return nil, "", fmt.Errorf("nginx exited at start (see logs/nginx.log)")
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return p, addr, nil
		}
	}
	p.stop()
	return nil, "", fmt.Errorf("nginx did not listen on %s within 10 s", addr)
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// runQuiet runs a tool with its output to /dev/null and its error output
// kept for the error.
func runQuiet(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		defer null.Close()
		cmd.Stdout = null // a real file: cat writes straight to it, no pipe
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func sizeOf(paths []string) (int64, error) {
	var total int64
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return total, err
		}
		total += st.Size()
	}
	return total, nil
}
