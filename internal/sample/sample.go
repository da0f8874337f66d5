// Package sample makes real HLS media with ffmpeg, for the demo and the
// tests, from ffmpeg's test sources, so no media has to be shipped: a small
// adaptive ladder (master playlist, two variants of MPEG-TS segments) and
// the other playlist shapes (shapes.go): fMP4 with EXT-X-MAP, single-file
// EXT-X-BYTERANGE (TS and fMP4), EXT-X-MEDIA audio and subtitle renditions
// with an I-frame playlist, discontinuities and several EXT-X-MAPs.
package sample

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Ladder describes the media MakeLadder writes under its folder.
type Ladder struct {
	Master   string   // "master.m3u8"
	Variants []string // "v0/index.m3u8", "v1/index.m3u8"
	Seconds  int
}

// MakeLadder writes a 2-variant HLS ladder of `seconds` seconds with
// 2-second segments into dir: master.m3u8, v0/index.m3u8, v0/seg000.ts, ...
func MakeLadder(dir string, seconds int) (*Ladder, error) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		return nil, fmt.Errorf("ffmpeg is needed to make sample media (apt-get install ffmpeg): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	dur := fmt.Sprint(seconds)
	cmd := exec.Command("ffmpeg", "-v", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration="+dur,
		"-f", "lavfi", "-i", "sine=frequency=440:duration="+dur,
		"-filter_complex", "[0:v]split=2[a][b];[b]scale=320:180[b2]",
		"-map", "[a]", "-map", "[b2]", "-map", "1:a", "-map", "1:a",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac",
		"-b:v:0", "800k", "-b:v:1", "300k",
		"-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
		"-hls_segment_filename", "v%v/seg%03d.ts", "-master_pl_name", "master.m3u8",
		"-var_stream_map", "v:0,a:0 v:1,a:1", "v%v/index.m3u8")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ffmpeg making the sample ladder: %v: %s", err, out)
	}
	l := &Ladder{Master: "master.m3u8", Variants: []string{"v0/index.m3u8", "v1/index.m3u8"}, Seconds: seconds}
	for _, v := range append([]string{l.Master}, l.Variants...) {
		if _, err := os.Stat(filepath.Join(dir, v)); err != nil {
			return nil, fmt.Errorf("ffmpeg did not write %s: %w", v, err)
		}
	}
	return l, nil
}

// FrameMD5 decodes a playlist or media file with ffmpeg and returns its
// framemd5 (one hash per decoded video and audio frame). Extra input
// options (e.g. "-allowed_extensions", "ALL") go before -i.
func FrameMD5(input string, inputOpts ...string) (string, error) {
	args := append([]string{"-v", "error", "-nostdin"}, inputOpts...)
	args = append(args, "-i", input, "-map", "0", "-f", "framemd5", "-")
	// ffmpeg may retry forever on a broken playlist or key server: bound it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffmpeg", args...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		return "", fmt.Errorf("ffmpeg framemd5 of %s: %v: %s", input, err, msg)
	}
	return string(out), nil
}
