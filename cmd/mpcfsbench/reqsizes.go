package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// reqStats summarises the FUSE READ requests a daemon received: how big
// the kernel made them is what decides how many round trips through the
// daemon a byte costs, whatever size the reader asked for.
type reqStats struct {
	count int
	bytes int64
	sizes map[int64]int // request size -> requests
	// inFlight sums, over READ requests, how many READs were already in
	// the daemon when it arrived (logged but not yet answered): 0 means
	// the kernel waited for each reply before asking for more (the
	// reader pays every round trip), more means read-ahead overlaps them.
	inFlight int
}

// goFuseRead matches go-fuse's --debug line for a READ request:
// "rx 12: READ n5 {Fh 1 [0 +131072)  L 0 RDONLY} p99"; goFuseReply a
// reply, "tx 12:     OK,  131072b data".
var (
	goFuseRead  = regexp.MustCompile(`rx (\d+): READ n\d+ \{Fh \d+ \[(\d+) \+(\d+)\)`)
	goFuseReply = regexp.MustCompile(`tx (\d+):`)
)

// parseReads reads a go-fuse debug log and counts its READ requests.
func parseReads(r io.Reader) (*reqStats, error) {
	st := &reqStats{sizes: map[int64]int{}}
	open := map[string]bool{} // READs received and not answered, by unique id
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if m := goFuseReply.FindSubmatch(line); m != nil {
			delete(open, string(m[1]))
			continue
		}
		m := goFuseRead.FindSubmatch(line)
		if m == nil {
			continue
		}
		n, err := strconv.ParseInt(string(m[3]), 10, 64)
		if err != nil {
			continue
		}
		st.count++
		st.bytes += n
		st.sizes[n]++
		st.inFlight += len(open)
		open[string(m[1])] = true
	}
	return st, sc.Err()
}

// meanInFlight is the READs already in the daemon when one arrived, on
// average.
func (s *reqStats) meanInFlight() float64 {
	if s == nil || s.count == 0 {
		return 0
	}
	return float64(s.inFlight) / float64(s.count)
}

// String: "812 reads, mean 1000 KiB: 1024 KiB 97%, 128 KiB 2%, other 1%"
// - the three commonest sizes by share of requests.
func (s *reqStats) String() string {
	if s == nil || s.count == 0 {
		return "-"
	}
	type sz struct {
		size int64
		n    int
	}
	var all []sz
	for k, v := range s.sizes {
		all = append(all, sz{k, v})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].size > all[j].size
	})
	parts := []string{}
	rest := s.count
	for i := 0; i < len(all) && i < 3; i++ {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", kib(all[i].size), 100*float64(all[i].n)/float64(s.count)))
		rest -= all[i].n
	}
	if rest > 0 {
		parts = append(parts, fmt.Sprintf("other %.0f%%", 100*float64(rest)/float64(s.count)))
	}
	return fmt.Sprintf("%d reads, mean %s: %s; %.1f already in flight at each", s.count, kib(s.bytes/int64(s.count)),
		strings.Join(parts, ", "), s.meanInFlight())
}

func kib(n int64) string { return fmt.Sprintf("%d KiB", (n+512)>>10) }

// debugPass mounts a second mpcfs with --debug (go-fuse logs every
// request) on the same store and task store, its S3 traffic through the
// logging proxy. It traces the store requests of the first byte of an
// output (firstByteTrace), then reads the CBC output with each style once,
// cold, and counts the READ requests each style caused and the GETs it
// made. A separate mount because logging every request slows the daemon;
// the request sizes are the kernel's choice (read-ahead window,
// max_pages), not the daemon's speed.
func (b *bench) debugPass() error {
	sl, err := b.startS3Log()
	if err != nil {
		return err
	}
	dm, err := b.mountMpcfsAt("mpcfs-debug", "http://"+sl.addr, "--debug")
	if err != nil {
		return fmt.Errorf("the --debug mount for request sizes: %w", err)
	}
	defer b.stopMount(dm.proc, dm.dir)
	dir := filepath.Join(dm.dir, "buckets", outBucket, "cbc")
	if b.cfg.FirstByte {
		if err := b.firstByteTrace(dir, sl); err != nil {
			return err
		}
	}
	if !b.cfg.Styles {
		return nil
	}
	logPath := filepath.Join(b.logs, "mpcfs-debug.log")
	b.report.debugRA = mountReadAhead(dm.dir)
	sizes := map[string]int64{}
	for _, s := range b.media.segs {
		sizes[mediaBucket+"/"+mediaPrefix+s] = fileSize(filepath.Join(b.media.dir, s))
	}
	for _, st := range styles {
		rs, gs, err := b.observed(st.name, logPath, sl, sizes, func() (int64, error) { return st.read(b, dir, b.media.segs) })
		if err != nil {
			return fmt.Errorf("%s on the --debug mount: %w", st.name, err)
		}
		for _, r := range b.report.styles {
			if r.style == st.name && r.target == cbcTarget {
				r.reqs, r.gets = rs, gs
			}
		}
		fmt.Fprintf(os.Stderr, "  %-38s FUSE reads: %v; S3: %v\n", st.name, rs, gs)
	}
	if b.cfg.StylesMatch != "" {
		return nil
	}
	return b.probeRows(dir, logPath, sl, sizes)
}

// firstByteTrace lists the store requests (every kind, the task store's
// too) between open(2) of a CBC segment and its first byte, on the
// logging mount: first on a mount that has not served the task yet (its
// plan is loaded), then the same segment again with the page cache
// dropped (what the first-byte rows' later runs measure). Written to
// logs/first-byte-requests.log and the screen.
func (b *bench) firstByteTrace(dir string, sl *s3Log) error {
	var s strings.Builder
	buf := make([]byte, 4096)
	for _, pass := range []string{"first open of the task's output on this mount", "the same segment again, page cache dropped"} {
		b.dropCaches()
		from := sl.markReqs()
		t0 := time.Since(sl.start)
		t := time.Now()
		f, err := os.Open(filepath.Join(dir, b.media.segs[0]))
		if err != nil {
			return fmt.Errorf("first-byte trace: %w", err)
		}
		opened := time.Since(t)
		_, err = f.Read(buf)
		took := time.Since(t)
		f.Close()
		if err != nil {
			return fmt.Errorf("first-byte trace: %w", err)
		}
		time.Sleep(200 * time.Millisecond) // let requests the read started finish logging
		fmt.Fprintf(&s, "%s: open %.1f ms, first byte %.1f ms; store requests (sent at, since open):\n%s",
			pass, float64(opened.Microseconds())/1000, float64(took.Microseconds())/1000, sl.reqsSince(from, t0))
	}
	fmt.Fprint(os.Stderr, s.String())
	return os.WriteFile(filepath.Join(b.logs, "first-byte-requests.log"), []byte(s.String()), 0o644)
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// mountReadAhead is the kernel read-ahead (KiB) in force on the mount at
// dir, read back from /sys/class/bdi: what was asked for is not always
// what applies.
func mountReadAhead(dir string) string {
	dev := mountDev(readStr("/proc/self/mountinfo"), dir)
	if dev == "" {
		return "?"
	}
	return strings.TrimSpace(readStr(filepath.Join("/sys/class/bdi", dev, "read_ahead_kb")))
}

// mountDev returns MAJOR:MINOR of the last mount at dir in a mountinfo
// text (mountinfo escapes space, tab, newline and backslash in octal).
func mountDev(mountinfo, dir string) string {
	esc := strings.NewReplacer(`\`, `\134`, " ", `\040`, "\t", `\011`, "\n", `\012`).Replace(dir)
	dev := ""
	for _, line := range strings.Split(mountinfo, "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == esc {
			dev = f[2]
		}
	}
	return dev
}

// fileSafe makes a style name usable as a file name.
func fileSafe(s string) string {
	return strings.Trim(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(s, "-"), "-")
}

// observed runs one cold read pass on the --debug mount and returns the
// FUSE READs its log gained and the S3 GETs the logging proxy saw
// (written to logs/s3-gets-NAME.log).
func (b *bench) observed(name, logPath string, sl *s3Log, sizes map[string]int64, read func() (int64, error)) (*reqStats, getStats, error) {
	from := fileSize(logPath)
	getsFrom := sl.mark()
	b.dropCaches()
	n, err := read()
	if err != nil {
		return nil, getStats{}, err
	}
	gs := sl.since(getsFrom, sizes, n)
	sl.writeLog(filepath.Join(b.logs, "s3-gets-"+fileSafe(name)+".log"), getsFrom)
	f, err := os.Open(logPath)
	if err != nil {
		return nil, getStats{}, err
	}
	defer f.Close()
	f.Seek(from, io.SeekStart)
	rs, err := parseReads(f)
	return rs, gs, err
}
