// Command warmprobe times warm (page-cache) reads through a minimal
// in-memory go-fuse file system against the same bytes in local files, to
// tell what mpcfs's warm reads lose to the kernel from what they lose to
// mpcfs (docs/warm-reads.md has the figures and how to run it).
//
// It mounts a folder of -n files of -size bytes served from one buffer in
// memory (Open replies FOPEN_KEEP_CACHE|FOPEN_NOFLUSH like mpcfs, or
// ENOSYS with -noopen, or FOPEN_PASSTHROUGH to a local copy with
// -passthrough), writes the same bytes to local files, fills every page
// cache the way the bench does (evict, then one sequential read, so
// readahead decides the folio sizes; -small-folios fills the local files'
// with 4 KiB folios instead), and then times warm passes of both sides in
// turn with a 1 MiB buffer. It prints the folio make-up of each side's
// page cache (from /proc/self/pagemap and /proc/kpageflags), the MB/s and
// the cost of open+close per file.
//
// It needs root (kpageflags, FUSE; passthrough needs CAP_SYS_ADMIN). Run it
// under the bench lock: it is a benchmark.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
	"unsafe"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

var (
	nFiles   = flag.Int("n", 10, "files on each side")
	size     = flag.Int("size", 10<<20, "bytes per file")
	runs     = flag.Int("runs", 9, "warm passes of each side (the median is printed)")
	dir      = flag.String("dir", "/var/tmp/warmprobe", "folder for the local files and passthrough copies (a disk file system, not tmpfs)")
	noOpen   = flag.Bool("noopen", false, "Open replies ENOSYS: the kernel sends no OPEN or RELEASE any more and keeps the page cache")
	passthru = flag.Bool("passthrough", false, "Open replies FOPEN_PASSTHROUGH to a local copy of the file (needs CAP_SYS_ADMIN)")
	small    = flag.Bool("small-folios", false, "fill the local files' page cache with 4 KiB folios (read with POSIX_FADV_RANDOM)")
	only     = flag.String("only", "", "local or fuse: only loop -loops warm passes of that side (to profile it with perf)")
	loops    = flag.Int("loops", 40, "passes with -only")
	debug    = flag.Bool("debug", false, "log every FUSE request")
)

const pageSize = 4096

// touched keeps the loads that map the pages in folios from being dropped
// as dead code.
var touched byte

type root struct {
	fusefs.Inode
	data []byte
}

// file serves data; copy, with -passthrough, is a local file of the same
// bytes that the kernel reads instead.
type file struct {
	fusefs.Inode
	data []byte
	copy string
}

var (
	_ fusefs.NodeOpener    = (*file)(nil)
	_ fusefs.NodeReader    = (*file)(nil)
	_ fusefs.NodeGetattrer = (*file)(nil)
)

func (f *file) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o444
	out.Size = uint64(len(f.data))
	return 0
}

func (f *file) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	switch {
	case *noOpen:
		return nil, 0, syscall.ENOSYS
	case f.copy != "":
		c, err := os.Open(f.copy)
		if err != nil {
			return nil, 0, syscall.EIO
		}
		return &copyHandle{c}, fuse.FOPEN_NOFLUSH, 0
	}
	return nil, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

func (f *file) Read(ctx context.Context, fh fusefs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	end := min(off+int64(len(dest)), int64(len(f.data)))
	if off >= end {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(f.data[off:end]), 0
}

// copyHandle hands the kernel its file for passthrough (go-fuse registers
// it as the inode's backing file and sets FOPEN_PASSTHROUGH).
type copyHandle struct{ f *os.File }

func (h *copyHandle) PassthroughFd() (int, bool) { return int(h.f.Fd()), true }

func (h *copyHandle) Release(ctx context.Context) syscall.Errno {
	h.f.Close()
	return 0
}

func (r *root) OnAdd(ctx context.Context) {
	for i := range *nFiles {
		f := &file{data: r.data}
		if *passthru {
			f.copy = filepath.Join(*dir, fmt.Sprintf("copy%03d", i))
		}
		r.AddChild(fmt.Sprintf("f%03d", i), r.NewPersistentInode(ctx, f, fusefs.StableAttr{Ino: uint64(100 + i)}), false)
	}
}

// fill evicts each file's page cache (a no-op on FUSE) and reads it once,
// with posix_fadvise(advice) first.
func fill(paths []string, advice int, buf []byte) {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			log.Fatal(err)
		}
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		unix.Fadvise(int(f.Fd()), 0, 0, advice)
		drain(f, buf)
		f.Close()
	}
}

func drain(f *os.File, buf []byte) int64 {
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if k == 0 || err != nil {
			return n
		}
	}
}

func readAll(paths []string, buf []byte) int64 {
	var n int64
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			log.Fatal(err)
		}
		n += drain(f, buf)
		f.Close()
	}
	return n
}

// openClose is the median time of open(2)+close(2) of one file, over
// passes of all of them.
func openClose(paths []string) time.Duration {
	var per []float64
	for range 21 {
		t := time.Now()
		for _, p := range paths {
			f, err := os.Open(p)
			if err != nil {
				log.Fatal(err)
			}
			f.Close()
		}
		per = append(per, float64(time.Since(t))/float64(len(paths)))
	}
	return time.Duration(median(per))
}

// folios maps p and counts its cached pages that belong to large folios
// (compound head or tail pages in /proc/kpageflags).
func folios(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	st, _ := f.Stat()
	m, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return err.Error()
	}
	defer syscall.Munmap(m)
	for i := 0; i < len(m); i += pageSize {
		touched ^= m[i] // map every page (they are cached: no read reaches the file system)
	}
	pagemap, err1 := os.Open("/proc/self/pagemap")
	flags, err2 := os.Open("/proc/kpageflags")
	if err1 != nil || err2 != nil {
		return fmt.Sprint(err1, err2)
	}
	defer pagemap.Close()
	defer flags.Close()
	const compoundHead, compoundTail = 1 << 15, 1 << 16
	base := uintptr(unsafe.Pointer(&m[0])) / pageSize
	var present, large int
	e := make([]byte, 8)
	for i := range len(m) / pageSize {
		pagemap.ReadAt(e, int64(base+uintptr(i))*8)
		v := binary.LittleEndian.Uint64(e)
		if v>>63 == 0 {
			continue
		}
		present++
		flags.ReadAt(e, int64(v&(1<<55-1))*8)
		if binary.LittleEndian.Uint64(e)&(compoundHead|compoundTail) != 0 {
			large++
		}
	}
	return fmt.Sprintf("%d of %d pages cached, %d%% of them in large folios", present, len(m)/pageSize, 100*large/max(present, 1))
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func main() {
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		log.Fatal(err)
	}
	data := make([]byte, *size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var local, fused []string
	mnt, err := os.MkdirTemp("", "warmprobe-mnt")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(mnt)
	for i := range *nFiles {
		local = append(local, filepath.Join(*dir, fmt.Sprintf("local%03d", i)))
		fused = append(fused, filepath.Join(mnt, fmt.Sprintf("f%03d", i)))
		for _, p := range []string{local[i], filepath.Join(*dir, fmt.Sprintf("copy%03d", i))} {
			if err := os.WriteFile(p, data, 0o600); err != nil {
				log.Fatal(err)
			}
		}
	}
	long := time.Hour
	srv, err := fusefs.Mount(mnt, &root{data: data}, &fusefs.Options{EntryTimeout: &long, AttrTimeout: &long,
		MountOptions: fuse.MountOptions{FsName: "warmprobe", Name: "warmprobe", MaxWrite: 1 << 20, MaxReadAhead: 1 << 20,
			DisableXAttrs: true, Debug: *debug}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Unmount()

	buf := make([]byte, 1<<20)
	syscall.Sync() // written pages are clean, so posix_fadvise can evict them
	localAdvice := unix.FADV_NORMAL
	if *small {
		localAdvice = unix.FADV_RANDOM
	}
	fill(local, localAdvice, buf)
	if *passthru {
		var copies []string
		for i := range *nFiles {
			copies = append(copies, filepath.Join(*dir, fmt.Sprintf("copy%03d", i)))
		}
		fill(copies, unix.FADV_NORMAL, buf)
	}
	fill(fused, unix.FADV_NORMAL, buf)
	fmt.Printf("page cache: local %s; fuse %s\n", folios(local[0]), folios(fused[0]))

	if *only != "" {
		paths := map[string][]string{"local": local, "fuse": fused}[*only]
		t := time.Now()
		var n int64
		for range *loops {
			n += readAll(paths, buf)
		}
		fmt.Printf("%s: %.0f MB/s\n", *only, float64(n)/1e6/time.Since(t).Seconds())
		return
	}
	var lm, fm []float64
	for range *runs {
		for _, side := range []struct {
			paths []string
			out   *[]float64
		}{{local, &lm}, {fused, &fm}} {
			t := time.Now()
			n := readAll(side.paths, buf)
			*side.out = append(*side.out, float64(n)/1e6/time.Since(t).Seconds())
		}
	}
	fmt.Printf("warm MB/s: local %.0f, fuse %.0f: fuse %.2fx local\n", median(lm), median(fm), median(fm)/median(lm))
	fmt.Printf("open+close per file: local %v, fuse %v\n", openClose(local), openClose(fused))
}
