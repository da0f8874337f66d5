package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// run does everything in order; peers that fail are noted, not fatal.
func (b *bench) run() error {
	if err := b.setup(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "mpcfsbench: %d segments, %.0f MB, %d runs per figure\n", len(b.media.segs), float64(b.media.bytes)/1e6, b.cfg.Runs)
	if b.cfg.HTTPOnly {
		if err := b.httpPhase(); err != nil {
			return err
		}
		return b.writeReport()
	}
	if b.cfg.Seq {
		for _, step := range []func() error{b.localRow, b.rawRows} {
			if err := step(); err != nil {
				return err
			}
		}
	}
	if err := b.mpcfsPhase(); err != nil {
		return err
	}
	if b.cfg.Peers {
		b.peers()
	}
	if b.cfg.GoBench {
		b.goBench()
		b.opensslSpeed()
	}
	if b.cfg.Tasks > 0 {
		if err := b.catalogue(); err != nil {
			return err
		}
	}
	return b.writeReport()
}

// keyedMount starts the key server (the key URI of the outputs'
// playlists, for ffmpeg and the players) and mounts mpcfs; the caller
// stops the mount.
func (b *bench) keyedMount() (*mpcfsMount, error) {
	if err := b.startKeyServer(); err != nil {
		return nil, err
	}
	return b.mountMpcfs()
}

// mpcfsPhase mounts mpcfs once for the sequential rows, the first-byte
// rows and the reader styles, and stops it before the peers run.
func (b *bench) mpcfsPhase() error {
	if !b.cfg.Seq && !b.cfg.Styles && !b.cfg.FirstByte {
		return nil
	}
	m, err := b.keyedMount()
	if err != nil {
		return err
	}
	defer b.stopMount(m.proc, m.dir)
	if err := b.mpcfsTasks(m); err != nil {
		return err
	}
	if b.cfg.Seq {
		if err := b.mpcfsRows(m); err != nil {
			return err
		}
	}
	if b.cfg.FirstByte {
		if err := b.firstByteRows(m); err != nil {
			return err
		}
		if err := b.listingRows(m); err != nil {
			return err
		}
	}
	if b.cfg.Styles {
		if err := b.stylesRows(m); err != nil {
			return err
		}
	}
	if b.cfg.Styles || b.cfg.FirstByte {
		return b.debugPass()
	}
	return nil
}

// httpPhase is -http-only: the sequential raw GET (the reference of the
// origin's targets), then a mount with the CBC output, its sequential
// FUSE row and the HTTP rows.
func (b *bench) httpPhase() error {
	if err := b.rawSeqRow(); err != nil {
		return err
	}
	m, err := b.keyedMount()
	if err != nil {
		return err
	}
	defer b.stopMount(m.proc, m.dir)
	if err := b.hlsTasks(m); err != nil {
		return err
	}
	// The same output read through the mount, in the same run: what the
	// origin adds or saves over the FUSE path.
	r := &row{name: "mpcfs AES-128-CBC output", daemon: m.proc}
	paths := joinAll(filepath.Join(m.dir, "buckets", outBucket, "cbc"), b.media.segs)
	if err := b.seqRows(r, func() (int64, error) { return readFiles(paths) }); err != nil {
		return err
	}
	b.report.seq = append(b.report.seq, r)
	return b.originRows(m)
}

func (b *bench) setup() error {
	b.loadStart = strings.Join(strings.Fields(readStr("/proc/loadavg"))[:3], " ")
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "mpcfsbench: not root: cold reads cannot drop the page cache, RSS peaks cannot be reset")
	}
	if _, err := os.Stat(b.cfg.Mpcfs); err != nil {
		return fmt.Errorf("no mpcfs binary at %s: run `make build`", b.cfg.Mpcfs)
	}
	tmp, err := os.MkdirTemp("", "mpcfsbench-")
	if err != nil {
		return err
	}
	b.tmp = tmp
	b.atExit(func() { removeUnlessMounted(tmp) })
	b.logs = filepath.Join(b.cfg.Out, "logs")
	if err := os.MkdirAll(b.logs, 0o755); err != nil {
		return err
	}
	if err := b.makeMedia(); err != nil {
		return err
	}
	if !b.cfg.HTTPOnly {
		if err := b.makeFMP4(); err != nil {
			return err
		}
	}
	if err := b.startMinio(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t := time.Now()
	if err := b.upload(ctx); err != nil {
		return fmt.Errorf("uploading media: %w", err)
	}
	if !b.cfg.HTTPOnly {
		if err := b.uploadFMP4(ctx); err != nil {
			return fmt.Errorf("uploading the fMP4 media: %w", err)
		}
		if err := b.uploadLadder(ctx, b.cfg.Ladder); err != nil {
			return fmt.Errorf("uploading the ladder: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "mpcfsbench: uploaded in %v\n", time.Since(t).Round(100*time.Millisecond))
	if b.cfg.LatencyMS > 0 {
		return b.startLatency()
	}
	return nil
}

// peers measures each peer; one that fails gets its error as the note.
func (b *bench) peers() {
	steps := []struct {
		name string
		f    func() error
	}{
		{"s3fs mount", b.s3fsRow}, {"rclone crypt mount", b.rcloneRow}, {"gocryptfs -reverse (local)", b.gocryptfsRow},
		{"openssl enc per segment (local)", b.opensslRow}, {"ffmpeg -hls_key_info_file (local)", b.ffmpegRow},
	}
	for _, s := range steps {
		if err := s.f(); err != nil {
			msg := strings.ReplaceAll(err.Error(), "\n", " ")
			if len(msg) > 200 {
				msg = msg[:200] + "..."
			}
			fmt.Fprintf(os.Stderr, "  %-34s failed: %s\n", s.name, msg)
			b.report.seq = append(b.report.seq, &row{name: s.name, skipped: true, note: "failed: " + msg})
		}
	}
}

// removeUnlessMounted never walks into a mount that failed to go away.
func removeUnlessMounted(dir string) {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(data), " "+dir+"/") {
		fmt.Fprintf(os.Stderr, "mpcfsbench: %s still has a mount; left in place\n", dir)
		return
	}
	os.RemoveAll(dir)
}
