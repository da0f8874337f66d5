package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// listingFolder is the folder `ls -l` lists: a ladder variant, 1,000 tiny
// segments and its playlist (the size of a two-hour title's folder).
const listingFolder = "v0"

// listingRows time `ls -l` of a folder of the ladder bucket, cold (the
// page cache and dentries dropped), through the mpcfs mount and s3fs: the
// way an admin browses a bucket, where a mount that asks the store per
// entry pays a round trip per segment.
func (b *bench) listingRows(m *mpcfsMount) error {
	lsl := func(dir string) func() (int, error) {
		return func() (int, error) {
			out, err := exec.Command("ls", "-l", dir).Output()
			if err != nil {
				return 0, fmt.Errorf("ls -l %s: %w", dir, err)
			}
			return strings.Count(string(out), "\n") - 1, nil // less "total"
		}
	}
	measure := func(name string, fn func() (int, error)) error {
		r := &row{name: name}
		for i := range b.cfg.Runs {
			b.dropCaches()
			t := time.Now()
			n, err := fn()
			if err != nil {
				return fmt.Errorf("listing, %s (run %d): %w", name, i+1, err)
			}
			if want := b.cfg.Ladder + 1; n != want {
				return fmt.Errorf("listing, %s (run %d): %d entries, want %d", name, i+1, n, want)
			}
			r.cold = append(r.cold, float64(time.Since(t).Microseconds())/1000)
		}
		fmt.Fprintf(os.Stderr, "  %-34s ls -l %8.1f ms (runs: %s)\n", name, median(r.cold), runListMs(r.cold))
		b.report.listing = append(b.report.listing, r)
		return nil
	}
	if err := measure("mpcfs mount", lsl(filepath.Join(m.dir, "buckets", ladderBucket, listingFolder))); err != nil {
		return err
	}
	if !have("s3fs", "") {
		return nil
	}
	p, dir, err := b.mountS3fsBucket("mnt-s3fs-listing", ladderBucket, "master.m3u8")
	if err != nil {
		return err
	}
	defer b.stopMount(p, dir)
	return measure("s3fs mount", lsl(filepath.Join(dir, listingFolder)))
}

func (b *bench) listingTable(s *strings.Builder) {
	r := b.report
	if len(r.listing) == 0 {
		return
	}
	fmt.Fprintf(s, "\n## Listing a folder (`ls -l` of a folder of %d objects, cold, %d run(s))\n\n"+
		"| target | ms median | runs min-max | time x mpcfs |\n|---|---:|---|---:|\n", b.cfg.Ladder+1, b.cfg.Runs)
	for _, x := range r.listing {
		fmt.Fprintf(s, "| %s | %.1f | %s | %s |\n", x.name, median(x.cold), spreadMs(x.cold), ratio(median(x.cold), median(r.listing[0].cold)))
	}
}
