package sample

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Shape is one HLS layout written by a Make* function below: Top is the
// playlist a task names as its input, Media every media playlist it
// reaches (relative to the folder), for the checks of each segment.
type Shape struct {
	Top   string
	Media []string
}

// The shapes are tiny (160x90, 1-second segments, a few seconds) so the
// tests that play them through ffmpeg stay fast; every video frame is a
// key frame candidate every 25 frames, so each segment starts on one.
const (
	shapeVideo = "testsrc=size=160x90:rate=25:duration="
	shapeAudio = "sine=frequency=440:duration="
)

// ffmpeg runs ffmpeg in dir with the common quiet flags.
func ffmpeg(dir string, args ...string) error {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		return fmt.Errorf("ffmpeg is needed to make sample media (apt-get install ffmpeg): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.Command("ffmpeg", append([]string{"-v", "error", "-y", "-nostdin"}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ffmpeg %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// avInput is ffmpeg's test picture and tone of the given length.
func avInput(seconds int) []string {
	d := fmt.Sprint(seconds)
	return []string{"-f", "lavfi", "-i", shapeVideo + d, "-f", "lavfi", "-i", shapeAudio + d}
}

// hlsOut are the encoder and HLS muxer options every shape shares.
var hlsOut = []string{"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-b:a", "32k",
	"-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"}

func args(parts ...[]string) []string {
	var all []string
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

// MakeFMP4 writes fMP4 HLS with one EXT-X-MAP: index.m3u8, init.mp4,
// seg0.m4s, ...
func MakeFMP4(dir string, seconds int) (*Shape, error) {
	err := ffmpeg(dir, args(avInput(seconds), hlsOut,
		[]string{"-hls_segment_type", "fmp4", "-hls_segment_filename", "seg%d.m4s", "index.m3u8"})...)
	return check(dir, &Shape{Top: "index.m3u8", Media: []string{"index.m3u8"}}, err)
}

// MakeSingleFile writes single-file HLS whose segments are EXT-X-BYTERANGEs
// of one file: index.m3u8 over index.ts, or (fmp4) over index.mp4 with the
// init section as a byte range of the same file.
func MakeSingleFile(dir string, seconds int, fmp4 bool) (*Shape, error) {
	extra := []string{"-hls_flags", "single_file"}
	if fmp4 {
		extra = append(extra, "-hls_segment_type", "fmp4")
	}
	err := ffmpeg(dir, args(avInput(seconds), hlsOut, extra, []string{"index.m3u8"})...)
	return check(dir, &Shape{Top: "index.m3u8", Media: []string{"index.m3u8"}}, err)
}

// MakeRenditions writes a master playlist with an EXT-X-MEDIA audio
// rendition (audio/index.m3u8), WebVTT subtitles (video/index_vtt.m3u8)
// and the video (video/index.m3u8), plus an I-frame playlist
// (iframes/index.m3u8, single file of its own) listed in the master by an
// EXT-X-I-FRAME-STREAM-INF line: ffmpeg 5.1 makes the I-frame playlist but
// does not write that line, so it is appended here.
func MakeRenditions(dir string, seconds int) (*Shape, error) {
	srt := fmt.Sprintf("1\n00:00:00,000 --> 00:00:%02d,000\nHello\n\n", seconds)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "subs.srt"), []byte(srt), 0o644); err != nil {
		return nil, err
	}
	err := ffmpeg(dir, args(avInput(seconds), []string{"-i", "subs.srt",
		"-map", "0:v", "-map", "1:a", "-map", "2:s", "-c:s", "webvtt"}, hlsOut, []string{
		"-hls_segment_filename", "%v/seg%d.ts", "-master_pl_name", "master.m3u8",
		"-var_stream_map", "a:0,agroup:aud,language:en,name:audio v:0,s:0,agroup:aud,sgroup:subs,name:video",
		"%v/index.m3u8"})...)
	if err == nil {
		err = os.MkdirAll(filepath.Join(dir, "iframes"), 0o755)
	}
	if err == nil {
		err = ffmpeg(dir, "-f", "lavfi", "-i", shapeVideo+fmt.Sprint(seconds), "-c:v", "libx264", "-preset", "ultrafast",
			"-g", "25", "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod",
			"-hls_flags", "iframes_only+single_file", "iframes/index.m3u8")
	}
	if err == nil {
		err = appendLine(filepath.Join(dir, "master.m3u8"),
			`#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=20000,RESOLUTION=160x90,CODECS="avc1.42c00b",URI="iframes/index.m3u8"`)
	}
	if err == nil {
		err = writeIFrames(filepath.Join(dir, "video"), "index.m3u8", "iframes.m3u8")
	}
	if err == nil {
		err = appendLine(filepath.Join(dir, "master.m3u8"),
			`#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=30000,RESOLUTION=160x90,CODECS="avc1.42c00b",URI="video/iframes.m3u8"`)
	}
	os.Remove(filepath.Join(dir, "subs.srt"))
	return check(dir, &Shape{Top: "master.m3u8",
		Media: []string{"audio/index.m3u8", "video/index.m3u8", "video/index_vtt.m3u8", "iframes/index.m3u8", "video/iframes.m3u8"}}, err)
}

// writeIFrames writes an I-frame playlist in Apple's layout, which ffmpeg
// cannot make: one EXT-X-BYTERANGE per segment of the TS media playlist
// src, inside that segment, from its start (PAT, PMT) to the end of the
// TS packet holding the last byte of its key frame, found with ffprobe.
func writeIFrames(dir, src, dst string) error {
	data, err := os.ReadFile(filepath.Join(dir, src))
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n" +
		"#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-I-FRAMES-ONLY\n")
	dur := ""
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(l, "#EXTINF:"):
			dur = l
		case l != "" && !strings.HasPrefix(l, "#"):
			n, err := keyFrameEnd(filepath.Join(dir, l))
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "%s\n#EXT-X-BYTERANGE:%d@0\n%s\n", dur, n, l)
		}
	}
	b.WriteString("#EXT-X-ENDLIST\n")
	return os.WriteFile(filepath.Join(dir, dst), []byte(b.String()), 0o644)
}

// keyFrameEnd is where the first video packet after a segment's leading
// key frame starts, rounded up to a whole 188-byte TS packet.
func keyFrameEnd(seg string) (int64, error) {
	st, err := os.Stat(seg)
	if err != nil {
		return 0, err
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "packet=pos,flags", "-of", "csv=p=0", seg).Output()
	if err != nil {
		return 0, fmt.Errorf("ffprobe %s: %w", seg, err)
	}
	var pos []int64
	for _, l := range strings.Fields(string(out)) {
		var p int64
		if _, err := fmt.Sscanf(l, "%d,", &p); err == nil {
			pos = append(pos, p)
		}
	}
	if len(pos) < 2 {
		return st.Size(), nil
	}
	return min((pos[1]+187)/188*188, st.Size()), nil
}

// MakeDiscontinuity writes one media playlist (index.m3u8) joining two
// ffmpeg runs of different pictures (testsrc, then testsrc2) with
// EXT-X-DISCONTINUITY. Both have the same size: ffmpeg 5.1 decodes a
// mid-stream size change nondeterministically, which would make framemd5
// useless as a check. With
// fmp4 each run has its own init section, so the playlist has two
// EXT-X-MAPs (a/init.mp4 and b/init.mp4); otherwise the runs are MPEG-TS.
func MakeDiscontinuity(dir string, seconds int, fmp4 bool) (*Shape, error) {
	var parts [][]byte
	for i, pattern := range []string{"testsrc=", "testsrc2="} {
		sub := []string{"a", "b"}[i]
		extra := []string{"-hls_segment_filename", "seg%d.ts"}
		if fmp4 {
			extra = []string{"-hls_segment_type", "fmp4", "-hls_segment_filename", "seg%d.m4s"}
		}
		in := avInput(seconds)
		in[3] = strings.Replace(in[3], "testsrc=", pattern, 1)
		if err := ffmpeg(filepath.Join(dir, sub), args(in, hlsOut, extra, []string{"index.m3u8"})...); err != nil {
			return nil, err
		}
		pl, err := os.ReadFile(filepath.Join(dir, sub, "index.m3u8"))
		if err != nil {
			return nil, err
		}
		parts = append(parts, pl)
	}
	joined, err := joinPlaylists(parts[0], parts[1])
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "index.m3u8"), joined, 0o644)
	}
	return check(dir, &Shape{Top: "index.m3u8", Media: []string{"index.m3u8"}}, err)
}

// joinPlaylists puts the segments of b after those of a (ffmpeg writes
// them in folders a/ and b/), with an EXT-X-DISCONTINUITY between. URIs
// and EXT-X-MAP URIs get their folder prefixed.
func joinPlaylists(a, b []byte) ([]byte, error) {
	var out bytes.Buffer
	bodyA, endA := splitEnd(a)
	bodyB, endB := splitEnd(b)
	if !endA || !endB {
		return nil, fmt.Errorf("ffmpeg playlists without EXT-X-ENDLIST")
	}
	out.Write(prefixURIs(bodyA, "a/", true))
	out.WriteString("#EXT-X-DISCONTINUITY\n")
	out.Write(prefixURIs(bodyB, "b/", false))
	out.WriteString("#EXT-X-ENDLIST\n")
	return out.Bytes(), nil
}

func splitEnd(pl []byte) ([]byte, bool) {
	i := bytes.Index(pl, []byte("#EXT-X-ENDLIST"))
	if i < 0 {
		return pl, false
	}
	return pl[:i], true
}

// prefixURIs prefixes segment and map URIs; the header tags of the second
// playlist are dropped (keepHeader false), keeping its EXT-X-MAP.
func prefixURIs(pl []byte, prefix string, keepHeader bool) []byte {
	var out bytes.Buffer
	header := true
	for _, l := range strings.Split(strings.TrimRight(string(pl), "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "#EXT-X-MAP:URI=\""):
			l = `#EXT-X-MAP:URI="` + prefix + strings.TrimPrefix(l, `#EXT-X-MAP:URI="`)
			header = false
		case strings.HasPrefix(l, "#EXTINF"):
			header = false
		case l != "" && !strings.HasPrefix(l, "#"):
			l = prefix + l
		}
		if header && !keepHeader {
			continue
		}
		out.WriteString(l + "\n")
	}
	return out.Bytes()
}

func appendLine(name, line string) error {
	f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// check makes sure ffmpeg wrote every playlist of the shape.
func check(dir string, s *Shape, err error) (*Shape, error) {
	if err != nil {
		return nil, err
	}
	for _, p := range append([]string{s.Top}, s.Media...) {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return nil, fmt.Errorf("ffmpeg did not write %s: %w", p, err)
		}
	}
	return s, nil
}
