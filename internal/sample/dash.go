package sample

import (
	"fmt"
	"os"
	"path/filepath"
)

// DASH describes media MakeDASH wrote: the MPD, and per representation
// its init segment and media segments (relative to the folder).
type DASH struct {
	MPD  string
	Reps []DASHRep
}

// DASHRep is one representation's files.
type DASHRep struct {
	ID       string
	Init     string
	Segments []string
	Video    bool
}

// MakeDASH writes DASH as `ffmpeg -f dash` makes it: two H.264 video
// representations (320x180, 160x90) in one AdaptationSet and an AAC audio
// one, 1-second segments, SegmentTemplate with $Number$ (timeline: with a
// SegmentTimeline too), in dir: manifest.mpd, init-stream<N>.m4s,
// chunk-stream<N>-<00001>.m4s. Video is yuv420p, which browsers
// decode (testsrc alone makes 4:4:4).
func MakeDASH(dir string, seconds int, timeline bool) (*DASH, error) {
	tl := "0"
	if timeline {
		tl = "1"
	}
	err := ffmpeg(dir, dashArgs(seconds, "-use_template", "1", "-use_timeline", tl)...)
	if err != nil {
		return nil, err
	}
	d := &DASH{MPD: "manifest.mpd"}
	for i := 0; i < 3; i++ {
		r := DASHRep{ID: fmt.Sprint(i), Init: fmt.Sprintf("init-stream%d.m4s", i), Video: i < 2}
		segs, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("chunk-stream%d-*.m4s", i)))
		for _, s := range segs {
			r.Segments = append(r.Segments, filepath.Base(s))
		}
		if len(r.Segments) == 0 {
			return nil, fmt.Errorf("ffmpeg wrote no segments of representation %d", i)
		}
		if _, err := os.Stat(filepath.Join(dir, r.Init)); err != nil {
			return nil, fmt.Errorf("ffmpeg did not write %s: %w", r.Init, err)
		}
		d.Reps = append(d.Reps, r)
	}
	return d, nil
}

// MakeDASHSingleFile writes the same presentation as one file per
// representation (ffmpeg -single_file 1): manifest.mpd with a SegmentList
// of byte ranges (Initialization@range, SegmentURL@mediaRange and
// @indexRange, one sidx per segment) over manifest-stream<N>.mp4. Reps
// name each file as Init, with no Segments.
func MakeDASHSingleFile(dir string, seconds int) (*DASH, error) {
	if err := ffmpeg(dir, dashArgs(seconds, "-single_file", "1")...); err != nil {
		return nil, err
	}
	d := &DASH{MPD: "manifest.mpd"}
	for i := 0; i < 3; i++ {
		r := DASHRep{ID: fmt.Sprint(i), Init: fmt.Sprintf("manifest-stream%d.mp4", i), Video: i < 2}
		if _, err := os.Stat(filepath.Join(dir, r.Init)); err != nil {
			return nil, fmt.Errorf("ffmpeg did not write %s: %w", r.Init, err)
		}
		d.Reps = append(d.Reps, r)
	}
	return d, nil
}

func dashArgs(seconds int, extra ...string) []string {
	return append([]string{"-f", "lavfi", "-i", fmt.Sprintf("testsrc=size=320x180:rate=25:duration=%d", seconds),
		"-f", "lavfi", "-i", shapeAudio + fmt.Sprint(seconds),
		"-filter_complex", "[0:v]split=2[a][b];[b]scale=160x90[b2]",
		"-map", "[a]", "-map", "[b2]", "-map", "1:a",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "32k",
		"-b:v:0", "300k", "-b:v:1", "100k",
		"-f", "dash", "-seg_duration", "1", "-adaptation_sets", "id=0,streams=v id=1,streams=a"},
		append(extra, "manifest.mpd")...)
}
