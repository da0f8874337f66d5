package main

import (
	"fmt"
	"sort"
	"strings"
)

// spread is "min-max" of a run list, the noise the median hides.
func spread(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 1 {
		return fmt.Sprintf("%.0f", s[0])
	}
	return fmt.Sprintf("%.0f-%.0f", s[0], s[len(s)-1])
}

// styleRef returns the row a style's figures are compared with: the raw
// GET (serial, or concurrent for the concurrent style) and s3fs read the
// same way.
func (r *report) styleRef(style, target string) *styleRow {
	for _, x := range r.styles {
		if x.style == style && x.target == target {
			return x
		}
	}
	return nil
}

// rawFor is the raw GET a style is held to: the concurrent GETs for the
// concurrent style, else the faster of the two serial ones of this run
// (one curl process; this process with the library mpcfs uses), so a slow
// client never flatters a ratio.
func (r *report) rawFor(style string) *styleRow {
	if x := r.styleRef(style, rawConcName); x != nil {
		return x
	}
	curl, inpro := r.styleRef("raw GET", rawCurlName), r.styleRef("raw GET", rawInProName)
	if medianStyle(inpro) > medianStyle(curl) {
		return inpro
	}
	return curl
}

func isRaw(target string) bool {
	return target == rawCurlName || target == rawInProName || target == rawConcName
}

func medianStyle(x *styleRow) float64 {
	if x == nil {
		return 0
	}
	return median(x.mbs)
}

func (b *bench) stylesTable(s *strings.Builder) {
	r := b.report
	if len(r.styles) == 0 {
		return
	}
	fmt.Fprintf(s, "\n## Reader styles (cold, every segment once, %d run(s); MB/s median, runs min-max)\n\n"+
		"Each style reads the mpcfs AES-128-CBC output and the plaintext through s3fs the same way. "+
		"\"x raw\" = ratio to the faster raw GET of the same objects in this run (one curl process over one connection, "+
		"or this process with minio-go, both serial; for the concurrent style, %d in-process GETs at once); "+
		"\"x s3fs\" = ratio to s3fs read the same way. "+
		"CPU = seconds per GB read, cold: the mount's daemon / MinIO / the reader (this process, its children and nginx). "+
		"FUSE READ requests and S3 GETs: what the daemon received and fetched in a separate pass on a `--debug` mount "+
		"whose store traffic goes through a logging proxy (read_ahead_kb there: %s).\n\n"+
		"| reader | target | MB/s | runs | x raw | x s3fs | CPU s/GB daemon / MinIO / reader | MinIO bytes out per byte read | FUSE READ requests | S3 GETs | mount read_ahead_kb | note |\n"+
		"|---|---|---:|---|---:|---:|---:|---:|---|---|---:|---|\n", b.cfg.Runs, b.cfg.Readers, orDash(r.debugRA))
	for _, x := range r.styles {
		raw, s3 := r.rawFor(x.style), r.styleRef(x.style, "s3fs")
		xr, xs := "-", "-"
		if !isRaw(x.target) {
			xr = ratio(median(x.mbs), medianStyle(raw))
			if x.target != "s3fs" {
				xs = ratio(median(x.mbs), medianStyle(s3))
			}
		}
		fmt.Fprintf(s, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", x.style, x.target, num(median(x.mbs)), spread(x.mbs),
			xr, xs, x.cpu, amp(x.cpu.s3), x.reqs, x.gets, orDash(x.raNote), x.note)
	}
	b.probesTable(s)
}

// probesTable: what the daemon does for one request at a time at the
// offsets of each pattern (no kernel read-ahead, no overlap).
func (b *bench) probesTable(s *strings.Builder) {
	if len(b.report.probes) == 0 {
		return
	}
	s.WriteString("\nProbes on the `--debug` mount (O_DIRECT: each read reaches the daemon as issued, one at a time; not timed):\n\n" +
		"| probe | FUSE READ requests | S3 GETs |\n|---|---|---|\n")
	for _, x := range b.report.probes {
		fmt.Fprintf(s, "| %s | %s | %s |\n", x.style, x.reqs, x.gets)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// styleTargets checks issue 13's per-style goals for the CBC output.
func (b *bench) styleTargets(check func(name string, got, want float64, less bool, unit string)) {
	r := b.report
	for _, st := range styles {
		cbc := r.styleRef(st.name, cbcTarget)
		if cbc == nil {
			continue
		}
		raw, s3 := r.rawFor(st.name), r.styleRef(st.name, "s3fs")
		if st.concurrent {
			check(fmt.Sprintf("%s: CBC >= 0.8x raw aggregate", st.name), div(median(cbc.mbs), medianStyle(raw)), 0.8, false, "x")
		} else {
			check(fmt.Sprintf("%s: CBC cold >= 0.9x raw GET", st.name), div(median(cbc.mbs), medianStyle(raw)), 0.9, false, "x")
		}
		check(fmt.Sprintf("%s: CBC cold >= 1.5x s3fs", st.name), div(median(cbc.mbs), medianStyle(s3)), 1.5, false, "x")
		check(fmt.Sprintf("%s: daemon CPU <= 0.6 s/GB, CBC cold", st.name), cbc.cpu.daemon, 0.6, true, " s/GB")
	}
}

func (b *bench) firstByteTable(s *strings.Builder) {
	r := b.report
	if len(r.firstByte) == 0 {
		return
	}
	fmt.Fprintf(s, "\n## Time to the first byte of the first segment (open(2) to the first read(2), cold, %d run(s))\n\n"+
		"| target | ms median | runs min-max | round trips |\n|---|---:|---|---:|\n", b.cfg.Runs)
	for _, x := range r.firstByte {
		rt := "-"
		if b.cfg.LatencyMS > 0 {
			rt = fmt.Sprintf("%.1f", median(x.cold)/float64(b.cfg.LatencyMS))
		}
		fmt.Fprintf(s, "| %s | %.1f | %s | %s |\n", x.name, median(x.cold), spreadMs(x.cold), rt)
	}
}

func spreadMs(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return fmt.Sprintf("%.1f-%.1f", s[0], s[len(s)-1])
}

// latencyTargets: at real latency mpcfs must hide what a serial client
// pays (read-ahead, warm-ahead), and start an output within two round
// trips.
func (b *bench) latencyTargets(check func(name string, got, want float64, less bool, unit string)) {
	r := b.report
	for _, st := range styles {
		cbc := r.styleRef(st.name, cbcTarget)
		if cbc == nil || st.concurrent {
			continue
		}
		check(fmt.Sprintf("at %d ms: %s: CBC >= 1.0x raw serial GET", b.cfg.LatencyMS, st.name), div(median(cbc.mbs), medianStyle(r.rawFor(st.name))), 1.0, false, "x")
		check(fmt.Sprintf("at %d ms: %s: CBC >= 2x s3fs", b.cfg.LatencyMS, st.name), div(median(cbc.mbs), medianStyle(r.styleRef(st.name, "s3fs"))), 2, false, "x")
	}
	if x := r.find(r.firstByte, "mpcfs AES-128-CBC"); x != nil {
		check(fmt.Sprintf("at %d ms: first byte of an output <= 2 round trips", b.cfg.LatencyMS), median(x.cold)/float64(b.cfg.LatencyMS), 2, true, " RT")
	}
	if x := r.find(r.firstByte, freshFirstByte); x != nil {
		check(fmt.Sprintf("at %d ms: first byte of an output <= 2 round trips, on a mount that did not run the task", b.cfg.LatencyMS), median(x.cold)/float64(b.cfg.LatencyMS), 2, true, " RT")
	}
}
