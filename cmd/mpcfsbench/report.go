package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// report collects every table of one run.
type report struct {
	seq, random, conc []*row
	taskMs            []float64
	taskRSS           float64
	goBench, osslSpd  string
	load              []*loadRow // HTTP clients (origin.go)
	apiP50, apiP99    float64    // API create latency, ms
	apiRate           float64    // API creates per second
	notes             []string
	styles            []*styleRow
	debugRA           string  // read_ahead_kb of the --debug mount
	firstByte         []*row  // ms from open(2) to the first byte, cold
	listing           []*row  // ms of ls -l of a ladder folder, cold
	rttMs             float64 // a HEAD's round trip through toxiproxy (-latency-ms)
	cat               *catalogueResult
	probes            []*styleRow // O_DIRECT probes on the --debug mount
}

func (r *report) find(rows []*row, prefix string) *row {
	for _, x := range rows {
		if strings.HasPrefix(x.name, prefix) && !x.skipped && len(x.cold) > 0 {
			return x
		}
	}
	return nil
}

// ratio formats a/b; "-" when either is missing.
func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// numSpread is a run list's median with its spread: "850 (790-910)".
func numSpread(xs []float64) string {
	if len(xs) < 2 {
		return num(median(xs))
	}
	return fmt.Sprintf("%s (%s)", num(median(xs)), spread(xs))
}

func num(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", x)
}

func (b *bench) markdown() string {
	r := b.report
	var s strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&s, "# mpcfs benchmark\n\n%s, host %s: %s, %d cores, Linux %s, %s.\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		host, cpuModel(), runtime.NumCPU(), strings.TrimSpace(readStr("/proc/sys/kernel/osrelease")), memTotal())
	fmt.Fprintf(&s, "Media: %d MPEG-TS segments of %d s at ~%d Mb/s, %.0f MB, in MinIO on 127.0.0.1. "+
		"Medians of %d runs; MB/s = 10^6 B/s; \"x raw\" = ratio to the raw S3 GET row of this run. "+
		"Cold = after `echo 3 > /proc/sys/vm/drop_caches`; warm = the reads right after (the set read again until %v have passed, at least once).\n",
		len(b.media.segs), b.cfg.SegSeconds, bitrateMbps, float64(b.media.bytes)/1e6, b.cfg.Runs, b.cfg.WarmMin)
	fmt.Fprintf(&s, "Load average (1/5/15 min) at start: %s; at the end: %s (other work on the machine makes figures noisy).\n",
		b.loadStart, strings.Join(strings.Fields(readStr("/proc/loadavg"))[:3], " "))
	if b.cfg.MpcfsEnv != "" {
		fmt.Fprintf(&s, "mpcfs ran with `%s`.\n", b.cfg.MpcfsEnv)
	}
	if b.cfg.LatencyMS > 0 {
		fmt.Fprintf(&s, "\n**Latency mode**: every client (raw GET, curl, s3fs, rclone, mpcfs) reaches MinIO through toxiproxy on 127.0.0.1 "+
			"with a latency toxic of %d ms on upstream and on downstream (%d ms round trip); a HEAD through it took %.1f ms.\n",
			b.cfg.LatencyMS/2, b.cfg.LatencyMS, r.rttMs)
	}
	if b.coldNote != "" {
		fmt.Fprintf(&s, "\n**%s**\n", b.coldNote)
	}
	b.seqTable(&s)
	b.warmTable(&s)
	b.randTable(&s)
	b.concTable(&s)
	b.stylesTable(&s)
	b.firstByteTable(&s)
	b.listingTable(&s)
	fmt.Fprintf(&s, "\n## Task creation\n\n2-variant ladder, %d segments each (synthetic playlists, tiny objects), AES-128-CBC: "+
		"request open(2) to SUCCEEDED read from control/tasks: median **%.0f ms** (runs: %s); mpcfs peak RSS %.0f MB.\n",
		b.cfg.Ladder, median(r.taskMs), fmtList(r.taskMs), r.taskRSS)
	b.catalogueTable(&s)
	b.targets(&s)
	b.originSection(&s)
	if r.goBench != "" {
		fmt.Fprintf(&s, "\n## Crypto layer (`go test -bench . ./crypto/`; Stdlib* = Go standard library baseline on the same buffers)\n\n```\n%s```\n", r.goBench)
	}
	if r.osslSpd != "" {
		fmt.Fprintf(&s, "\n## `openssl speed -evp` (one core, 1 MiB blocks)\n\n```\n%s```\n", r.osslSpd)
	}
	for _, n := range r.notes {
		fmt.Fprintf(&s, "\n- %s", n)
	}
	s.WriteString("\n")
	return s.String()
}

func (b *bench) seqTable(s *strings.Builder) {
	raw := b.report.find(b.report.seq, rawName)
	rc, rw := 0.0, 0.0
	if raw != nil {
		rc, rw = median(raw.cold), median(raw.warm)
	}
	s.WriteString("\n## Sequential reads (1 MiB reads, all segments in order; MB/s median (runs min-max))\n\n" +
		"| row | cold MB/s | cold x raw | warm MB/s | warm x raw | peak RSS MB | CPU s/GB cold: daemon / MinIO / reader | CPU s/GB warm | MinIO bytes out per byte read | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, x := range b.report.seq {
		c, w := median(x.cold), median(x.warm)
		fmt.Fprintf(s, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", x.name, numSpread(x.cold), ratio(c, rc), numSpread(x.warm), ratio(w, rw), num(x.rss), x.cpu, x.cpuWarm, amp(x.cpu.s3), x.note)
	}
}

// warmTable splits the warm passes of the rows that read files into their
// per-file part (open and close, timed alone) and the rest (copying the
// bytes out of the page cache), and sets each against the local page
// cache and against its 4 KiB-page twin (smallPageTwin): the share of the
// gap that the page cache's folio size explains.
func (b *bench) warmTable(s *strings.Builder) {
	local, twin := b.report.find(b.report.seq, "local file"), b.report.find(b.report.seq, smallPageTwin)
	var rows []*row
	for _, x := range b.report.seq {
		if len(x.openUs) > 0 && len(x.warm) > 0 {
			rows = append(rows, x)
		}
	}
	if len(rows) == 0 {
		return
	}
	s.WriteString("\n## Warm reads: per file and per byte (docs/warm-reads.md)\n\n" +
		"Warm = the set read again as many times as fit in -warm-min right after the cold pass. " +
		"open+close = open(2) and close(2) of each file with its page cache warm, timed alone; its share is of the time a warm pass spends per file. " +
		"The 4 KiB-page twin reads the local files from a page cache of 4 KiB folios, the only size a FUSE file's page cache has on this kernel. " +
		"Paired = in each run, over the local files it is made of read warm right after it (same load; median over runs): the warm targets use it.\n\n" +
		"| row | warm MB/s | x local page cache | x local, paired | x 4 KiB-page twin | open+close us per file | open+close share of a warm pass |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range rows {
		w, us := median(x.warm), median(x.openUs)
		share := "-"
		if w > 0 && x.passBytes > 0 {
			perFileUs := float64(x.passBytes) / float64(len(x.paths)) / w // bytes / (MB/s) = us
			share = fmt.Sprintf("%.0f%%", 100*us/perFileUs)
		}
		paired := "-"
		if p := x.warmPaired(); p > 0 {
			paired = fmt.Sprintf("%.2f", p)
		}
		fmt.Fprintf(s, "| %s | %s | %s | %s | %s | %.1f | %s |\n", x.name, numSpread(x.warm), ratio(w, warmOf(local)), paired, ratio(w, warmOf(twin)), us, share)
	}
}

func (b *bench) randTable(s *strings.Builder) {
	raw := b.report.find(b.report.random, rawName)
	fmt.Fprintf(s, "\n## Random 64 KiB reads at random offsets (one reader, %v per run, cold)\n\n"+
		"| row | reads/s | x raw | peak RSS MB | note |\n|---|---:|---:|---:|---|\n", b.cfg.RandDur)
	for _, x := range b.report.random {
		fmt.Fprintf(s, "| %s | %s | %s | %s | %s |\n", x.name, numSpread(x.cold), ratio(median(x.cold), medianOf(raw)), num(x.rss), x.note)
	}
}

func (b *bench) concTable(s *strings.Builder) {
	raw := b.report.find(b.report.conc, rawName)
	fmt.Fprintf(s, "\n## %d concurrent readers (segments striped over readers, cold)\n\n"+
		"| row | aggregate MB/s | x raw | peak RSS MB |\n|---|---:|---:|---:|\n", b.cfg.Readers)
	for _, x := range b.report.conc {
		fmt.Fprintf(s, "| %s | %s | %s | %s |\n", x.name, numSpread(x.cold), ratio(median(x.cold), medianOf(raw)), num(x.rss))
	}
}

func medianOf(x *row) float64 {
	if x == nil {
		return 0
	}
	return median(x.cold)
}

// warmVsLocal is x's warm figure over the local page cache's: paired
// within each run when x was (row.pairWith: the local files read right
// after, under the same load), else the ratio of the two rows' medians.
func warmVsLocal(x, local *row) float64 {
	if x == nil {
		return 0
	}
	if p := x.warmPaired(); p > 0 {
		return p
	}
	return div(warmOf(x), warmOf(local))
}

func warmOf(x *row) float64 {
	if x == nil {
		return 0
	}
	return median(x.warm)
}

// targets checks the goals against this run's figures.
func (b *bench) targets(s *strings.Builder) {
	r := b.report
	cbc, ctr := r.find(r.seq, "mpcfs AES-128-CBC"), r.find(r.seq, "mpcfs AES-128-CTR")
	plain, raw := r.find(r.seq, "mpcfs plaintext"), r.find(r.seq, rawName)
	s3fs, local := r.find(r.seq, "s3fs"), r.find(r.seq, "local file")
	peakRSS := 0.0
	for _, x := range r.conc {
		if strings.HasPrefix(x.name, "mpcfs") {
			peakRSS = max(peakRSS, x.rss)
		}
	}
	s.WriteString("\n## Targets\n\n| target | measured | met |\n|---|---:|---|\n")
	check := func(name string, got, want float64, less bool, unit string) {
		fmt.Fprintf(s, "| %s | %.2f%s | %s |\n", name, got, unit, verdict(got, want, less))
	}
	check("CBC cold >= 1.5x s3fs cold", div(medianOf(cbc), medianOf(s3fs)), 1.5, false, "x")
	check("CBC cold >= 0.8x raw S3 GET cold", div(medianOf(cbc), medianOf(raw)), 0.8, false, "x")
	check("CTR cold >= 0.9x mpcfs plaintext cold", div(medianOf(ctr), medianOf(plain)), 0.9, false, "x")
	check("CBC warm >= 0.9x local page cache", warmVsLocal(cbc, local), 0.9, false, "x")
	check("CTR warm >= 0.9x local page cache", warmVsLocal(ctr, local), 0.9, false, "x")
	cencRow := r.find(r.seq, "mpcfs CENC cenc")
	check("CENC cenc cold >= 0.85x raw S3 GET cold", div(medianOf(cencRow), medianOf(raw)), 0.85, false, "x")
	check("CENC cenc cold >= AES-128-CBC cold", div(medianOf(cencRow), medianOf(cbc)), 1, false, "x")
	check("task creation (2 x 1,000 segments) < 1 s", median(r.taskMs)/1000, 1, true, " s")
	check(fmt.Sprintf("mpcfs peak RSS with %d readers < 100 MB", b.cfg.Readers), peakRSS, 100, true, " MB")
	b.styleTargets(check)
	if b.cfg.LatencyMS > 0 {
		b.latencyTargets(check)
	}
	b.catalogueTargets(check)
}

// verdict: "yes" when got meets want (below it when less, at or above it
// otherwise), "n/a" when nothing was measured. A target "<= x" is checked
// as "< x" plus equality, so both spellings in the table are honest.
func verdict(got, want float64, less bool) string {
	if got == 0 {
		return "n/a"
	}
	return map[bool]string{true: "yes", false: "**no**"}[(less && got <= want) || (!less && got >= want)]
}

func div(a, b float64) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	return a / b
}

func fmtList(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, ", ")
}

func readStr(p string) string { d, _ := os.ReadFile(p); return string(d) }

func cpuModel() string {
	for _, l := range strings.Split(readStr("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	for _, l := range strings.Split(readStr("/proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			var kb float64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return fmt.Sprintf("%.0f GiB RAM", kb/1024/1024)
		}
	}
	return "RAM unknown"
}

// goBench runs the crypto package's benchmarks (stdlib baselines included).
func (b *bench) goBench() {
	goBin := envOr("GO", "go")
	cmd := exec.Command(goBin, "test", "-run", "^$", "-bench", ".", "-benchtime", "1s", "./crypto/")
	cmd.Dir = b.cfg.Repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.report.notes = append(b.report.notes, fmt.Sprintf("go test -bench failed: %v", err))
	}
	b.report.goBench = string(out)
	fmt.Fprint(os.Stderr, string(out))
}

// opensslSpeed notes what OpenSSL (AES-NI, assembly) does on one core.
func (b *bench) opensslSpeed() {
	var s strings.Builder
	for _, alg := range []string{"aes-128-cbc", "aes-128-ctr"} {
		out, err := exec.Command("openssl", "speed", "-evp", alg, "-bytes", "1048576", "-seconds", "2").Output()
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		s.WriteString(lines[len(lines)-1] + "  (1000s of bytes per second)\n")
	}
	b.report.osslSpd = s.String()
	fmt.Fprint(os.Stderr, s.String())
}

func (b *bench) writeReport() error {
	md := b.markdown()
	fmt.Print(md)
	if err := os.MkdirAll(b.cfg.Out, 0o755); err != nil {
		return err
	}
	p := filepath.Join(b.cfg.Out, "bench-results.md")
	fmt.Fprintf(os.Stderr, "mpcfsbench: results written to %s\n", p)
	return os.WriteFile(p, []byte(md), 0o644)
}

func amp(x float64) string {
	if x < 0.005 {
		return "-"
	}
	return fmt.Sprintf("%.2f", x)
}
