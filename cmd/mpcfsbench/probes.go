package main

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// Probe readers bypass the kernel's page cache and read-ahead (O_DIRECT:
// FUSE passes each read to the daemon as it is), so the daemon sees
// exactly one request at a time at the offsets the probe chooses. They
// separate the request pattern a reader style causes from the timing the
// kernel adds: the cat pattern (256 KiB, 512 KiB, then 1 MiB requests at
// 768 KiB + k MiB, which are not multiples of the daemon's chunk size)
// against 1 MiB requests at k MiB.
type probe struct {
	name  string
	sizes func(off int64) int // request size at off
}

var probes = []probe{
	{"probe: O_DIRECT 1 MiB at k MiB, one at a time", func(off int64) int { return 1 << 20 }},
	{"probe: O_DIRECT cat pattern (256K, 512K, then 1 MiB at 768K + k MiB), one at a time", func(off int64) int {
		switch off {
		case 0:
			return 256 << 10
		case 256 << 10:
			return 512 << 10
		}
		return 1 << 20
	}},
}

// readDirect reads each path through with the probe's request sizes.
func (p probe) readDirect(paths []string) (int64, error) {
	buf, err := syscall.Mmap(-1, 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return 0, err
	}
	defer syscall.Munmap(buf) // page-aligned, as O_DIRECT wants
	var total int64
	for _, path := range paths {
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
		if err != nil {
			return total, fmt.Errorf("O_DIRECT open: %w", err)
		}
		var off int64
		for {
			n, err := f.ReadAt(buf[:p.sizes(off)], off)
			off += int64(n)
			total += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return total, err
			}
		}
		f.Close()
	}
	return total, nil
}

// probeRows runs the probes on the --debug mount after the styles, with
// the same counting of FUSE READs and S3 GETs.
func (b *bench) probeRows(dir, logPath string, sl *s3Log, sizes map[string]int64) error {
	for _, p := range probes {
		rs, gs, err := b.observed(p.name, logPath, sl, sizes, func() (int64, error) { return p.readDirect(joinAll(dir, b.media.segs)) })
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		b.report.probes = append(b.report.probes, &styleRow{style: p.name, target: cbcTarget, reqs: rs, gets: gs})
		fmt.Fprintf(os.Stderr, "  %-38s FUSE reads: %v; S3: %v\n", p.name, rs, gs)
	}
	return nil
}
