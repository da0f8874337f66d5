package main

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	readBuf  = 1 << 20  // sequential reads: bounded 1 MiB buffer
	randRead = 64 << 10 // random reads: 64 KiB at random offsets
)

// row is one line of the throughput table. MB/s are 10^6 bytes per second.
type row struct {
	name       string
	cold, warm []float64
	rss        float64 // peak RSS of the serving process in MB; 0 = not applicable
	note       string
	skipped    bool
	daemon     *proc  // the serving process, whose CPU time is counted
	cpu        cpuUse // CPU seconds per GB read, cold passes
	cpuWarm    cpuUse // the same for the warm passes
	// paths, when the row reads files, are those files: after its runs
	// the row also times open(2)+close(2) of each, the per-file part of a
	// warm pass (openUs, microseconds per file, one figure per run).
	paths     []string
	openUs    []float64
	passBytes int64 // bytes of one pass over the set
	// pairWith, if set, are local files read warm right after each run's
	// warm passes of this row (pairedLocal, MB/s, one a run): a reference
	// taken under the same load as the row's warm figure, for warmPaired.
	pairWith    []string
	pairedLocal []float64
}

// warmPaired is the median over runs of the row's warm MB/s over the
// local files' warm MB/s measured right after it; 0 without pairWith.
func (r *row) warmPaired() float64 {
	if len(r.pairedLocal) == 0 || len(r.pairedLocal) != len(r.warm) {
		return 0
	}
	ratios := make([]float64, len(r.warm))
	for i := range r.warm {
		ratios[i] = r.warm[i] / r.pairedLocal[i]
	}
	return median(ratios)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// seqRows measures fn cold (after dropping the page cache) then warm (the
// read right after), runs times. fn returns the bytes it read.
func (b *bench) seqRows(r *row, fn func() (int64, error)) error {
	return b.seqRowsPass(r, func(bool) (int64, error) { return fn() })
}

// seqRowsPass is seqRows for a row whose reader differs between the cold
// pass and the warm ones (fn is told which it is making).
//
// A warm pass of the whole media set lasts a few tens of milliseconds
// with a small set: one descheduling of the reader on a shared machine
// then moves the figure by half. So a warm figure is the bytes of as many
// warm passes as fit in -warm-min (at least one) over their time.
func (b *bench) seqRowsPass(r *row, fn func(cold bool) (int64, error)) error {
	var coldBytes, warmBytes int64
	var coldCPU, warmCPU cpuUse
	for i := range b.cfg.Runs {
		b.dropCaches()
		for pass, dst := range []*[]float64{&r.cold, &r.warm} {
			c0 := b.cpuNow(r.daemon)
			var stopPerf func()
			if i == 0 && pass == 0 {
				stopPerf = b.perf(r)
			}
			t := time.Now()
			n, err := fn(pass == 0)
			for pass == 1 && err == nil && time.Since(t) < b.cfg.WarmMin {
				var more int64
				more, err = fn(false)
				n += more
			}
			if stopPerf != nil {
				stopPerf()
			}
			if err != nil {
				return fmt.Errorf("%s (run %d, pass %d): %w", r.name, i+1, pass+1, err)
			}
			*dst = append(*dst, float64(n)/1e6/time.Since(t).Seconds())
			if pass == 0 {
				r.passBytes = n
				coldCPU = coldCPU.add(b.cpuNow(r.daemon).sub(c0))
				coldBytes += n
			} else {
				warmCPU = warmCPU.add(b.cpuNow(r.daemon).sub(c0))
				warmBytes += n
			}
		}
		if r.pairWith != nil {
			mbs, err := b.warmLocal(r.pairWith)
			if err != nil {
				return fmt.Errorf("%s: the local files read right after: %w", r.name, err)
			}
			r.pairedLocal = append(r.pairedLocal, mbs)
		}
		if r.paths != nil {
			us, err := openCloseUs(r.paths)
			if err != nil {
				return fmt.Errorf("%s: open and close: %w", r.name, err)
			}
			r.openUs = append(r.openUs, us)
		}
	}
	r.cpu, r.cpuWarm = coldCPU.perGB(coldBytes), warmCPU.perGB(warmBytes)
	fmt.Fprintf(os.Stderr, "  %-34s cold %8.0f MB/s  warm %8.0f MB/s  (runs: cold %s, warm %s; CPU s/GB daemon/MinIO/reader: cold %v, warm %v)\n",
		r.name, median(r.cold), median(r.warm), runList(r.cold), runList(r.warm), r.cpu, r.cpuWarm)
	if r.paths != nil {
		fmt.Fprintf(os.Stderr, "  %-34s open+close %6.1f us per file (runs: %s)\n", "", median(r.openUs), runList(r.openUs))
	}
	if r.pairWith != nil {
		fmt.Fprintf(os.Stderr, "  %-34s local files warm right after: %s MB/s; warm x local, paired: %.2f\n", "", runList(r.pairedLocal), r.warmPaired())
	}
	return nil
}

// warmLocal reads paths once (filling their page cache, dropped at the
// start of the run) and then times warm passes of them the way seqRows
// does, in MB/s.
func (b *bench) warmLocal(paths []string) (float64, error) {
	if _, err := readFiles(paths); err != nil {
		return 0, err
	}
	t := time.Now()
	var n int64
	for n == 0 || time.Since(t) < b.cfg.WarmMin {
		k, err := readFiles(paths)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return float64(n) / 1e6 / time.Since(t).Seconds(), nil
}

// openCloseUs is the median time in microseconds of open(2) and close(2)
// of one of paths (their page cache warm: this is the per-file part of a
// warm read, with no byte read), over a few passes over all of them.
func openCloseUs(paths []string) (float64, error) {
	const passes = 9
	per := make([]float64, 0, passes)
	for range passes {
		t := time.Now()
		for _, p := range paths {
			f, err := os.Open(p)
			if err != nil {
				return 0, err
			}
			f.Close()
		}
		per = append(per, float64(time.Since(t).Microseconds())/float64(len(paths)))
	}
	return median(per), nil
}

// runList prints each run's figure, for the log: the spread is the noise.
func runList(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(s, " ")
}

// readFiles reads each file through with one 1 MiB buffer.
func readFiles(paths []string) (int64, error) {
	buf := make([]byte, readBuf)
	var total int64
	for _, p := range paths {
		n, err := readFile(p, buf)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func readFile(p string, buf []byte) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return drain(f, buf)
}

// drain reads r to EOF into buf (io.Copy to io.Discard would use its own
// small buffer instead of ours).
func drain(r io.Reader, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// readS3 GETs each object whole, the way a client would without a mount.
func (b *bench) readS3(bucket string, keys []string) (int64, error) {
	buf := make([]byte, readBuf)
	var total int64
	for _, k := range keys {
		n, err := b.getS3(bucket, k, buf)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (b *bench) getS3(bucket, key string, buf []byte) (int64, error) {
	rc, err := b.st.Open(context.Background(), bucket, key, 0, -1)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return drain(rc, buf)
}

// concurrent splits items over w readers (item i to reader i%w) and returns
// the aggregate rate in MB/s.
func concurrent(w, items int, read func(i int, buf []byte) (int64, error)) (float64, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		first error
	)
	t := time.Now()
	for r := range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, readBuf)
			for i := r; i < items; i += w {
				n, err := read(i, buf)
				mu.Lock()
				total += n
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return float64(total) / 1e6 / time.Since(t).Seconds(), first
}

// randomReads does 64 KiB reads at random offsets for d and returns
// reads per second. readAt reads len(buf) bytes of item i at off.
func randomReads(seed int64, d time.Duration, sizes []int64, readAt func(i int, buf []byte, off int64) error) (float64, error) {
	rng := rand.New(rand.NewSource(seed))
	buf := make([]byte, randRead)
	t := time.Now()
	n := 0
	for time.Since(t) < d {
		i := rng.Intn(len(sizes))
		off := rng.Int63n(sizes[i] - randRead)
		if err := readAt(i, buf, off); err != nil {
			return 0, fmt.Errorf("64 KiB at %d of item %d: %w", off, i, err)
		}
		n++
	}
	return float64(n) / time.Since(t).Seconds(), nil
}

// fileReadAt opens paths once (like a player seeking around) and preads.
func fileReadAt(paths []string) (func(i int, buf []byte, off int64) error, []int64, func(), error) {
	files := make([]*os.File, len(paths))
	sizes := make([]int64, len(paths))
	closeAll := func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}
	for i, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		files[i] = f
		st, err := f.Stat()
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		sizes[i] = st.Size()
	}
	readAt := func(i int, buf []byte, off int64) error {
		_, err := files[i].ReadAt(buf, off)
		return err
	}
	return readAt, sizes, closeAll, nil
}

// s3ReadAt makes one ranged GET per read.
func (b *bench) s3ReadAt(bucket string, keys []string) func(i int, buf []byte, off int64) error {
	return func(i int, buf []byte, off int64) error {
		rc, err := b.st.Open(context.Background(), bucket, keys[i], off, int64(len(buf)))
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.ReadFull(rc, buf)
		return err
	}
}

// perf starts `perf record -g` on the row's daemon when -perf is set and
// returns what stops it (SIGINT by PID, so perf writes its file).
func (b *bench) perf(r *row) func() {
	if r.daemon == nil {
		return nil
	}
	return b.perfProc(r.name, r.daemon)
}

// perfProc is perf for any process we started, named for its file.
func (b *bench) perfProc(name string, p *proc) func() {
	if b.cfg.Perf == "" {
		return nil
	}
	os.MkdirAll(b.cfg.Perf, 0o755)
	name = strings.NewReplacer(" ", "-", "/", "-", "(", "", ")", "").Replace(name)
	out := filepath.Join(b.cfg.Perf, name+".perf.data")
	cmd := exec.Command("perf", "record", "-F", "997", "-g", "-o", out, "-p", strconv.Itoa(p.cmd.Process.Pid))
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "mpcfsbench: perf:", err)
		return nil
	}
	time.Sleep(300 * time.Millisecond) // let perf attach
	return func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
	}
}
