package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Where the media lives in MinIO and in the mount.
const (
	mediaBucket  = "media"
	mediaPrefix  = "vod/"
	outBucket    = "out"
	ladderBucket = "ladder"
	cryptBucket  = "crypt" // rclone crypt's encrypted copy
	bitrateMbps  = 20
)

// mediaSet is the generated HLS on local disk.
type mediaSet struct {
	dir   string
	segs  []string // segment file names, in order
	bytes int64    // sum of segment sizes
}

func (m mediaSet) localPaths() []string { return joinAll(m.dir, m.segs) }

func joinAll(dir string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = filepath.Join(dir, n)
	}
	return out
}

// makeMedia generates (once, cached) ~MB megabytes of SegSeconds MPEG-TS
// segments at ~20 Mb/s. Noise on the test source keeps x264 from
// compressing it below the target bitrate, so the size is real.
func (b *bench) makeMedia() error {
	name := fmt.Sprintf("media-%dmb", b.cfg.MB)
	if b.cfg.SegSeconds != 4 {
		name += fmt.Sprintf("-%ds", b.cfg.SegSeconds)
	}
	dir := filepath.Join(b.cfg.Cache, name)
	if _, err := os.Stat(filepath.Join(dir, "index.m3u8")); err != nil {
		if err := generate(dir, b.cfg.MB, b.cfg.SegSeconds); err != nil {
			return err
		}
	}
	segs, err := filepath.Glob(filepath.Join(dir, "seg_*.ts"))
	if err != nil || len(segs) == 0 {
		return fmt.Errorf("no segments in %s (remove it to regenerate)", dir)
	}
	sort.Strings(segs)
	b.media = mediaSet{dir: dir}
	for _, s := range segs {
		st, err := os.Stat(s)
		if err != nil {
			return err
		}
		b.media.segs = append(b.media.segs, filepath.Base(s))
		b.media.bytes += st.Size()
	}
	return nil
}

// generate encodes into DIR.tmp and renames it, so an interrupted run never
// leaves a half set that a later run would take as complete.
func generate(dir string, mb, segSeconds int) error {
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	secs := mb * 8 / bitrateMbps
	fmt.Fprintf(os.Stderr, "mpcfsbench: generating %d s of 20 Mb/s HLS in %s (once)\n", secs, dir)
	t := time.Now()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25,noise=alls=40:allf=t", "-t", fmt.Sprint(secs),
		"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "20M", "-maxrate", "20M", "-bufsize", "40M",
		"-g", fmt.Sprint(25*segSeconds), "-keyint_min", fmt.Sprint(25*segSeconds), "-sc_threshold", "0", // a keyframe starts each segment
		"-f", "hls", "-hls_time", fmt.Sprint(segSeconds), "-hls_playlist_type", "vod",
		"-hls_segment_filename", filepath.Join(tmp, "seg_%04d.ts"), filepath.Join(tmp, "index.m3u8"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ffmpeg: %v: %s", err, out)
	}
	fmt.Fprintf(os.Stderr, "mpcfsbench: generated in %v\n", time.Since(t).Round(time.Second))
	os.RemoveAll(dir)
	return os.Rename(tmp, dir)
}

// fmp4Prefix is where the fMP4 remux of the media lives in MinIO.
const fmp4Prefix = "vodfmp4/"

// makeFMP4 remuxes the media (once, cached) to fMP4 HLS with ffmpeg -c
// copy: the same frames in fMP4 segments of the same duration (init.mp4, seg_*.m4s),
// for the Common Encryption rows.
func (b *bench) makeFMP4() error {
	dir := b.media.dir + "-fmp4"
	if _, err := os.Stat(filepath.Join(dir, "index.m3u8")); err != nil {
		tmp := dir + ".tmp"
		os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return err
		}
		cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", filepath.Join(b.media.dir, "index.m3u8"),
			"-c", "copy", "-f", "hls", "-hls_time", fmt.Sprint(b.cfg.SegSeconds), "-hls_playlist_type", "vod",
			"-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
			"-hls_segment_filename", filepath.Join(tmp, "seg_%04d.m4s"), filepath.Join(tmp, "index.m3u8"))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ffmpeg remux to fMP4: %v: %s", err, out)
		}
		os.RemoveAll(dir)
		if err := os.Rename(tmp, dir); err != nil {
			return err
		}
	}
	segs, err := filepath.Glob(filepath.Join(dir, "seg_*.m4s"))
	if err != nil || len(segs) == 0 {
		return fmt.Errorf("no fMP4 segments in %s (remove it to regenerate)", dir)
	}
	sort.Strings(segs)
	b.fmp4 = mediaSet{dir: dir}
	for _, s := range segs {
		st, err := os.Stat(s)
		if err != nil {
			return err
		}
		b.fmp4.segs = append(b.fmp4.segs, filepath.Base(s))
		b.fmp4.bytes += st.Size()
	}
	return nil
}

// uploadFMP4 puts the fMP4 remux into media/vodfmp4/.
func (b *bench) uploadFMP4(ctx context.Context) error {
	names := append([]string{"index.m3u8", "init.mp4"}, b.fmp4.segs...)
	return parallel(4, len(names), func(i int) error {
		data, err := os.ReadFile(filepath.Join(b.fmp4.dir, names[i]))
		if err != nil {
			return err
		}
		return b.st.Put(ctx, mediaBucket, fmp4Prefix+names[i], data)
	})
}

// upload puts the playlist and segments into media/vod/.
func (b *bench) upload(ctx context.Context) error {
	for _, bk := range []string{mediaBucket, outBucket, ladderBucket} {
		if err := b.direct.MakeBucket(ctx, bk); err != nil {
			return err
		}
	}
	names := append([]string{"index.m3u8"}, b.media.segs...)
	return parallel(4, len(names), func(i int) error {
		data, err := os.ReadFile(filepath.Join(b.media.dir, names[i]))
		if err != nil {
			return err
		}
		return b.direct.Put(ctx, mediaBucket, mediaPrefix+names[i], data)
	})
}

// uploadLadder makes the synthetic task-creation input: a master playlist
// and two VOD variants of n tiny segments each. Task creation only reads
// playlists and lists sizes, so the segments' content does not matter.
func (b *bench) uploadLadder(ctx context.Context, n int) error { return b.uploadLadderAt(ctx, "", n) }

// uploadLadderAt is uploadLadder under prefix in the ladder bucket.
func (b *bench) uploadLadderAt(ctx context.Context, prefix string, n int) error {
	master := "#EXTM3U\n#EXT-X-VERSION:3\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720\nv0/index.m3u8\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\nv1/index.m3u8\n"
	if err := b.direct.Put(ctx, ladderBucket, prefix+"master.m3u8", []byte(master)); err != nil {
		return err
	}
	var pl strings.Builder
	pl.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n")
	for i := range n {
		fmt.Fprintf(&pl, "#EXTINF:4.000000,\ns%05d.ts\n", i)
	}
	pl.WriteString("#EXT-X-ENDLIST\n")
	seg := bytes.Repeat([]byte{0x47}, 376)
	for _, v := range []string{"v0/", "v1/"} {
		if err := b.direct.Put(ctx, ladderBucket, prefix+v+"index.m3u8", []byte(pl.String())); err != nil {
			return err
		}
	}
	return parallel(16, 2*n, func(i int) error {
		return b.direct.Put(ctx, ladderBucket, fmt.Sprintf("%sv%d/s%05d.ts", prefix, i%2, i/2), seg)
	})
}

// parallel runs f(0..n-1) on w workers and returns the first error.
func parallel(w, n int, f func(i int) error) error {
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil || i >= n
				mu.Unlock()
				if stop {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return first
}
