// Command mpcfsbench measures mpcfs against what a user would use instead,
// on the same media on the same MinIO, in one run, and prints every figure
// as a ratio to a raw S3 GET of the same objects measured in that run.
//
// Rows: local file (disk / page cache), raw S3 GET, mpcfs plaintext, mpcfs
// AES-128-CBC and AES-128-CTR outputs, s3fs, rclone crypt mount, gocryptfs
// -reverse, openssl enc per segment, ffmpeg -hls_key_info_file. Then random
// 64 KiB reads, 16 concurrent readers, task creation for a 1,000-segment
// 2-variant ladder, the crypto package's go benchmarks and `openssl speed`.
//
// It needs root (drop_caches, clear_refs, FUSE), ffmpeg, a MinIO binary and
// bin/mpcfs; `make bench` provides them. Everything it starts is stopped by
// PID and every mount unmounted, also on error or SIGINT/SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"time"
)

type config struct {
	MB int // size of the media set
	// SegSeconds is the media's segment duration (4: ~10 MB segments;
	// 1: ~2.5 MB, where each segment's open weighs more).
	SegSeconds int
	Runs       int           // runs per figure; the median is reported
	Readers    int           // concurrent readers
	Ladder     int           // segments per variant of the task-creation ladder
	RandDur    time.Duration // length of one random-read run
	Mpcfs      string        // the mpcfs binary
	Minio      string        // the MinIO binary
	Cache      string        // where generated media is kept between runs
	Out        string        // folder for the results file
	Repo       string        // module root, for `go test -bench ./crypto/`
	MpcfsEnv   string        // extra environment for the mpcfs daemon, e.g. "GOMEMLIMIT=64MiB"
	Perf       string        // when set, perf-record the daemon's first cold pass into this folder
	FuseRA     int           // experiment: read_ahead_kb of the mpcfs mount
	WarmMin    time.Duration // a warm figure reads the set again until this long has passed
	GoBench    bool
	Peers      bool
	Seq        bool // the 1 MiB sequential, random, concurrent and task-creation rows
	Styles     bool // the reader-style rows (cat, cp, dd, nginx, ffmpeg, 16 readers)
	// StylesMatch keeps only the reader styles whose name matches (and
	// skips the O_DIRECT probes); "" keeps all.
	StylesMatch string
	FirstByte   bool // the time-to-first-byte rows (and their request trace)
	HTTPOnly    bool // only the raw GET reference and the HTTP rows (origin, nginx, 64 clients, API)

	LatencyMS int    // > 0: every client reaches MinIO through toxiproxy with this round trip
	Toxiproxy string // the toxiproxy server binary

	Tasks         int // > 0: the catalogue rows with this many tasks in the task store
	TaskWriters   int // concurrent writers for the creation-throughput row
	CatalogueSegs int // segments per variant of each catalogue title
}

func parseFlags() *config {
	home, _ := os.UserHomeDir()
	c := &config{}
	flag.IntVar(&c.MB, "mb", 500, "approximate size of the media set in MB (~20 Mb/s MPEG-TS segments of -seg-seconds)")
	flag.IntVar(&c.SegSeconds, "seg-seconds", 4, "segment duration of the generated media in seconds (a set per duration is cached)")
	flag.IntVar(&c.Runs, "runs", 3, "runs per figure (medians are reported)")
	flag.IntVar(&c.Readers, "readers", 16, "concurrent readers in the concurrency rows")
	flag.IntVar(&c.Ladder, "ladder", 1000, "segments per variant in the task-creation ladder")
	flag.DurationVar(&c.RandDur, "rand-dur", 2*time.Second, "length of one random 64 KiB read run")
	flag.StringVar(&c.Mpcfs, "mpcfs", "bin/mpcfs", "the mpcfs binary (make build)")
	flag.StringVar(&c.Minio, "minio", envOr("MPCFS_MINIO_BIN", filepath.Join(home, ".cache/mpcfs/bin/minio")), "the MinIO server binary")
	flag.StringVar(&c.Cache, "cache", filepath.Join(home, ".cache/mpcfs/bench"), "where generated media is kept")
	flag.StringVar(&c.Out, "out", "bench-out", "folder for bench-results.md")
	flag.StringVar(&c.Repo, "repo", ".", "module root (for go test -bench ./crypto/)")
	flag.StringVar(&c.MpcfsEnv, "mpcfs-env", "", "extra NAME=VALUE settings (space-separated) for the mpcfs daemon, e.g. GOMEMLIMIT=64MiB")
	flag.DurationVar(&c.WarmMin, "warm-min", 300*time.Millisecond, "a warm figure reads the whole set as many times as fit in this (at least once): one warm pass of a small set is too short to time on a shared machine")
	flag.IntVar(&c.FuseRA, "fuse-ra", 0, "experiment: set the mpcfs mount's read_ahead_kb (0 = leave the mount's own)")
	flag.StringVar(&c.Perf, "perf", "", "folder for `perf record -g` profiles of each FUSE daemon's first cold pass (perf report -i FILE)")
	flag.BoolVar(&c.GoBench, "gobench", true, "also run the crypto package's go benchmarks and openssl speed")
	flag.BoolVar(&c.Peers, "peers", true, "also measure the peers (s3fs, rclone, gocryptfs, openssl, ffmpeg)")
	flag.BoolVar(&c.Seq, "seq", true, "measure the 1 MiB sequential, random, concurrent and task-creation rows")
	flag.BoolVar(&c.Styles, "styles", true, "measure the reader styles (cat, cp, dd, nginx sendfile, ffmpeg, concurrent readers)")
	flag.StringVar(&c.StylesMatch, "styles-match", "", "only the reader styles whose name matches this regexp, e.g. '^cat' (no O_DIRECT probes then)")
	flag.BoolVar(&c.FirstByte, "first-byte", true, "measure the time to the first byte of the first segment (and trace its store requests on a logging mount)")
	flag.BoolVar(&c.HTTPOnly, "http-only", false, "measure only the HTTP rows (origin, nginx over the mount, 64 clients, API creates) and the sequential raw GET they are compared with")
	flag.IntVar(&c.LatencyMS, "latency-ms", 0, "put MinIO behind toxiproxy with this round-trip latency for every client (0 = loopback)")
	flag.StringVar(&c.Toxiproxy, "toxiproxy", envOr("MPCFS_TOXIPROXY_BIN", filepath.Join(home, ".cache/mpcfs/bin/toxiproxy-server")), "the toxiproxy server binary (-latency-ms)")
	flag.IntVar(&c.Tasks, "tasks", 0, "catalogue mode: fill the task store with this many tasks and measure mount start, RSS, lookups, creation")
	flag.IntVar(&c.TaskWriters, "task-writers", 8, "concurrent writers for the catalogue's creation-throughput row")
	flag.IntVar(&c.CatalogueSegs, "catalogue-segs", 20, "segments per variant of each 2-variant catalogue title")
	flag.Parse()
	if c.Runs < 1 || c.MB < 8 || c.SegSeconds < 1 || c.Readers < 1 || c.Ladder < 1 || c.LatencyMS < 0 || c.Tasks < 0 || c.TaskWriters < 1 || c.CatalogueSegs < 1 {
		fmt.Fprintln(os.Stderr, "mpcfsbench: -runs, -readers, -ladder, -task-writers, -catalogue-segs -seg-seconds must be >= 1, -mb >= 8, -latency-ms and -tasks >= 0")
		os.Exit(2)
	}
	if c.StylesMatch != "" {
		re, err := regexp.Compile(c.StylesMatch)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mpcfsbench: -styles-match: %v\n", err)
			os.Exit(2)
		}
		styles = slices.DeleteFunc(styles, func(st readerStyle) bool { return !re.MatchString(st.name) })
		if len(styles) == 0 {
			fmt.Fprintf(os.Stderr, "mpcfsbench: -styles-match %q matches no reader style\n", c.StylesMatch)
			os.Exit(2)
		}
	}
	return c
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	b := newBench(parseFlags())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "mpcfsbench: %v: stopping what was started\n", s)
		b.cleanup()
		os.Exit(130)
	}()
	err := b.run()
	b.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mpcfsbench:", err)
		os.Exit(1)
	}
}
