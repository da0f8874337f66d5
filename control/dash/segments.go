package dash

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Rep is one Representation and the media it references (URIs relative
// to the MPD, BaseURLs applied).
type Rep struct {
	ID       string
	AS       *Node // its AdaptationSet
	Node     *Node
	Init     string   // "" when there is none
	Segments []string // in order
	// File is set for a single-file Representation (SegmentBase, or a
	// SegmentList of mediaRanges): the file every range is in. Init and
	// Segments are then empty; InitEnd is where its init ends, and Ranges
	// are the byte-range attributes that must follow the file's new
	// layout.
	File    string
	InitEnd int64
	Ranges  []*RangeAttr
}

// RangeAttr is a byte-range attribute ("first-last", inclusive) of an
// MPD element: Initialization@range, SegmentURL@mediaRange/@indexRange,
// SegmentBase@indexRange.
type RangeAttr struct {
	Node        *Node
	Attr        string
	First, Last int64
}

// Set rewrites the attribute to a new range.
func (r *RangeAttr) Set(first, last int64) {
	for i := range r.Node.Attr {
		a := &r.Node.Attr[i]
		if a.Name.Space == "" && a.Name.Local == r.Attr {
			a.Value = fmt.Sprintf("%d-%d", first, last)
		}
	}
}

func rangeAttr(n *Node, attr string) (*RangeAttr, bool, error) {
	v, ok := n.Get(attr)
	if !ok {
		return nil, false, nil
	}
	a, b, found := strings.Cut(v, "-")
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if !found || err1 != nil || err2 != nil || first < 0 || last < first {
		return nil, true, fmt.Errorf("%s@%s %q is not a byte range", n.Name.Local, attr, v)
	}
	return &RangeAttr{Node: n, Attr: attr, First: first, Last: last}, true, nil
}

// singleFile fills a single-file Representation: the init range (it must
// start the file) and every range attribute of seg (SegmentBase or
// SegmentList).
func singleFile(rep *Rep, file string, seg *Node) error {
	if file == "" {
		return fmt.Errorf("byte ranges without a BaseURL naming the file")
	}
	rep.File = file
	init := seg.Child("Initialization")
	if init == nil {
		return fmt.Errorf("%s without Initialization@range", seg.Name.Local)
	}
	if _, ok := init.Get("sourceURL"); ok {
		return fmt.Errorf("Initialization@sourceURL with byte-range segments is not supported")
	}
	ir, ok, err := rangeAttr(init, "range")
	if err != nil {
		return err
	}
	if !ok || ir.First != 0 {
		return fmt.Errorf("Initialization@range must start at 0")
	}
	rep.InitEnd = ir.Last + 1
	rep.Ranges = append(rep.Ranges, ir)
	if r, ok, err := rangeAttr(seg, "indexRange"); err != nil {
		return err
	} else if ok {
		rep.Ranges = append(rep.Ranges, r)
	}
	for _, su := range seg.Children("SegmentURL") {
		if _, ok := su.Get("media"); ok {
			return fmt.Errorf("SegmentURL with both media and mediaRange is not supported")
		}
		for _, attr := range []string{"mediaRange", "indexRange"} {
			r, ok, err := rangeAttr(su, attr)
			if err != nil {
				return err
			}
			if ok {
				rep.Ranges = append(rep.Ranges, r)
			} else if attr == "mediaRange" {
				return fmt.Errorf("SegmentURL without media or mediaRange")
			}
		}
	}
	return nil
}

// maxSegments bounds the segments of one Representation, and of the MPD.
const maxSegments = 1_000_000

// Representations lists every Representation of every Period with its
// init and media segment URIs. SegmentTemplate ($Number$ with a duration,
// or a SegmentTimeline with $Number$ or $Time$, S@r -1 up to the next S or
// the Period's end) and SegmentList are
// understood; SegmentBase (one file indexed by its sidx) is reported as
// unsupported. exists says whether a URI names an object: a template by
// duration lists numbers while they exist (at least as many as the
// duration implies; ffmpeg writes one more audio segment than that).
func (m *MPD) Representations(exists func(uri string) bool) ([]Rep, error) {
	if t, _ := m.Root.Get("type"); t == "dynamic" {
		return nil, fmt.Errorf("MPD is dynamic (live): only static (VOD) MPDs can be encrypted")
	}
	mpdDur, _ := m.Root.Get("mediaPresentationDuration")
	total, err := parseDuration(mpdDur)
	if mpdDur != "" && err != nil {
		return nil, fmt.Errorf("MPD@mediaPresentationDuration: %v", err)
	}
	var reps []Rep
	listed := 0
	periods := m.Root.Children("Period")
	for pi, p := range periods {
		dur, err := periodDuration(p, periods, pi, total)
		if err != nil {
			return nil, err
		}
		for _, as := range p.Children("AdaptationSet") {
			for _, r := range as.Children("Representation") {
				rep, err := representation(m.Root, p, as, r, dur, exists)
				if err != nil {
					id, _ := r.Get("id")
					return nil, fmt.Errorf("Representation %q: %v", id, err)
				}
				reps = append(reps, rep)
				listed += len(rep.Segments)
				if listed > maxSegments {
					return nil, fmt.Errorf("MPD lists more than %d segments", maxSegments)
				}
			}
		}
	}
	if len(reps) == 0 {
		return nil, fmt.Errorf("MPD has no Representation")
	}
	return reps, nil
}

// periodDuration is a Period's length in seconds: its duration, or up to
// the next Period's start, or to the end of the presentation.
func periodDuration(p *Node, all []*Node, i int, total float64) (float64, error) {
	if d, ok := p.Get("duration"); ok {
		return parseDuration(d)
	}
	start := 0.0
	if s, ok := p.Get("start"); ok {
		v, err := parseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("Period@start: %v", err)
		}
		start = v
	}
	if i+1 < len(all) {
		if s, ok := all[i+1].Get("start"); ok {
			next, err := parseDuration(s)
			if err != nil {
				return 0, fmt.Errorf("Period@start: %v", err)
			}
			return next - start, nil
		}
	}
	return total - start, nil
}

func representation(mpd, period, as, r *Node, dur float64, exists func(string) bool) (Rep, error) {
	id, _ := r.Get("id")
	bw, _ := r.Get("bandwidth")
	rep := Rep{ID: id, AS: as, Node: r}
	base, file, err := baseURL(mpd, period, as, r)
	if err != nil {
		return rep, err
	}
	levels := []*Node{period, as, r}
	if mostSpecific(levels, "SegmentTemplate") == nil && mostSpecific(levels, "SegmentList") == nil {
		if sb := mostSpecific(levels, "SegmentBase"); sb != nil {
			return rep, singleFile(&rep, file, sb)
		}
	}
	if list := mostSpecific(levels, "SegmentList"); list != nil {
		if urls := list.Children("SegmentURL"); len(urls) > 0 {
			if _, ranged := urls[0].Get("mediaRange"); ranged {
				return rep, singleFile(&rep, file, list)
			}
		}
		if init := list.Child("Initialization"); init != nil {
			if u, ok := init.Get("sourceURL"); ok {
				rep.Init = base + u
			}
		}
		for _, su := range list.Children("SegmentURL") {
			u, ok := su.Get("media")
			if !ok {
				return rep, fmt.Errorf("SegmentURL without media")
			}
			if _, ok := su.Get("mediaRange"); ok {
				return rep, fmt.Errorf("SegmentURLs mix media files and mediaRanges")
			}
			rep.Segments = append(rep.Segments, base+u)
		}
		return rep, checkCount(rep)
	}
	tmpl := mergedTemplate(levels)
	if tmpl == nil {
		return rep, fmt.Errorf("no SegmentTemplate, SegmentList or SegmentBase")
	}
	attr := func(k string) string { return tmpl.attrs[k] }
	if init := attr("initialization"); init != "" {
		u, err := expand(init, id, bw, 0, 0)
		if err != nil {
			return rep, fmt.Errorf("SegmentTemplate@initialization: %v", err)
		}
		rep.Init = base + u
	}
	media := attr("media")
	if media == "" {
		return rep, fmt.Errorf("SegmentTemplate without media")
	}
	number := int64(1)
	if s := attr("startNumber"); s != "" {
		if number, err = strconv.ParseInt(s, 10, 64); err != nil {
			return rep, fmt.Errorf("SegmentTemplate@startNumber %q", s)
		}
	}
	add := func(num, t int64) error {
		u, err := expand(media, id, bw, num, t)
		if err != nil {
			return fmt.Errorf("SegmentTemplate@media: %v", err)
		}
		rep.Segments = append(rep.Segments, base+u)
		if len(rep.Segments) > maxSegments {
			return fmt.Errorf("more than %d segments", maxSegments)
		}
		return nil
	}
	if tl := tmpl.timeline; tl != nil {
		scale := 1.0
		if v := attr("timescale"); v != "" {
			if scale, err = strconv.ParseFloat(v, 64); err != nil || scale <= 0 {
				return rep, fmt.Errorf("SegmentTemplate@timescale %q", v)
			}
		}
		var t int64
		ss := tl.Children("S")
		for si, s := range ss {
			if v, ok := s.Get("t"); ok {
				if t, err = strconv.ParseInt(v, 10, 64); err != nil {
					return rep, fmt.Errorf("S@t %q", v)
				}
			}
			d, err := strconv.ParseInt(sAttr(s, "d"), 10, 64)
			if err != nil || d <= 0 {
				return rep, fmt.Errorf("S@d %q", sAttr(s, "d"))
			}
			r := int64(0)
			if v, ok := s.Get("r"); ok {
				if r, err = strconv.ParseInt(v, 10, 64); err != nil || r < -1 {
					return rep, fmt.Errorf("S@r %q", v)
				}
			}
			if r == -1 {
				// Repeat up to the next S@t, or the end of the Period.
				end := int64(math.Ceil(dur*scale - 1e-9))
				if si+1 < len(ss) {
					if v, ok := ss[si+1].Get("t"); ok {
						if end, err = strconv.ParseInt(v, 10, 64); err != nil {
							return rep, fmt.Errorf("S@t %q", v)
						}
					}
				}
				if dur <= 0 && si+1 == len(ss) {
					return rep, fmt.Errorf("S@r -1 needs the Period's duration")
				}
				r = max((end-t+d-1)/d-1, 0)
			}
			for k := int64(0); k <= r; k++ {
				if err := add(number, t); err != nil {
					return rep, err
				}
				number++
				t += d
			}
		}
		return rep, checkCount(rep)
	}
	if strings.Contains(media, "$Time") {
		return rep, fmt.Errorf("SegmentTemplate@media uses $Time$ without a SegmentTimeline")
	}
	d, err := strconv.ParseFloat(attr("duration"), 64)
	if err != nil || d <= 0 {
		return rep, fmt.Errorf("SegmentTemplate needs a duration or a SegmentTimeline")
	}
	scale := 1.0
	if s := attr("timescale"); s != "" {
		if scale, err = strconv.ParseFloat(s, 64); err != nil || scale <= 0 {
			return rep, fmt.Errorf("SegmentTemplate@timescale %q", s)
		}
	}
	if dur <= 0 {
		return rep, fmt.Errorf("the Period's duration is unknown (no mediaPresentationDuration)")
	}
	want := int64(math.Ceil(dur*scale/d - 1e-9))
	for k := int64(0); ; k++ {
		u, err := expand(media, id, bw, number+k, 0)
		if err != nil {
			return rep, fmt.Errorf("SegmentTemplate@media: %v", err)
		}
		if !exists(base + u) {
			if k < want {
				return rep, fmt.Errorf("segment %q is missing (the duration implies %d segments)", base+u, want)
			}
			break
		}
		if err := add(number+k, 0); err != nil {
			return rep, err
		}
	}
	return rep, checkCount(rep)
}

func sAttr(n *Node, k string) string { v, _ := n.Get(k); return v }

func checkCount(rep Rep) error {
	if len(rep.Segments) == 0 {
		return fmt.Errorf("no media segments")
	}
	return nil
}

func mostSpecific(levels []*Node, name string) *Node {
	for i := len(levels) - 1; i >= 0; i-- {
		if c := levels[i].Child(name); c != nil {
			return c
		}
	}
	return nil
}

type template struct {
	attrs    map[string]string
	timeline *Node
}

// mergedTemplate merges the SegmentTemplates of Period, AdaptationSet and
// Representation, the more specific overriding (DASH 5.3.9.1).
func mergedTemplate(levels []*Node) *template {
	var t *template
	for _, n := range levels {
		st := n.Child("SegmentTemplate")
		if st == nil {
			continue
		}
		if t == nil {
			t = &template{attrs: map[string]string{}}
		}
		for _, a := range st.Attr {
			if a.Name.Space == "" {
				t.attrs[a.Name.Local] = a.Value
			}
		}
		if tl := st.Child("SegmentTimeline"); tl != nil {
			t.timeline = tl
		}
	}
	return t
}

// baseURL joins the relative BaseURLs of the MPD, Period, AdaptationSet
// and Representation: the folder they name, and the file when the last
// one names a file (single-file Representations). Absolute ones point
// outside the input folder.
func baseURL(levels ...*Node) (dir, file string, err error) {
	for _, n := range levels {
		b := n.Child("BaseURL")
		if b == nil {
			continue
		}
		u := b.Text()
		if strings.Contains(u, "://") || strings.HasPrefix(u, "/") {
			return "", "", fmt.Errorf("BaseURL %q is absolute: media must be in the MPD's folder", u)
		}
		file = ""
		if u != "" && !strings.HasSuffix(u, "/") {
			file = dir + u
			u = u[:strings.LastIndex(u, "/")+1]
		}
		dir += u
	}
	return dir, file, nil
}

var templateID = regexp.MustCompile(`\$(RepresentationID|Number|Time|Bandwidth)(%0[0-9]+d)?\$|\$\$`)

// expand fills a SegmentTemplate URL ($RepresentationID$, $Number$,
// $Time$, $Bandwidth$, with an optional %0Nd width, and $$).
func expand(tmpl, id, bw string, number, t int64) (string, error) {
	var err error
	out := templateID.ReplaceAllStringFunc(tmpl, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := templateID.FindStringSubmatch(m)
		var v string
		switch sub[1] {
		case "RepresentationID":
			if sub[2] != "" {
				err = fmt.Errorf("$RepresentationID$ takes no width")
			}
			return id
		case "Number":
			v = strconv.FormatInt(number, 10)
		case "Time":
			v = strconv.FormatInt(t, 10)
		case "Bandwidth":
			v = bw
		}
		if sub[2] != "" {
			w, _ := strconv.Atoi(sub[2][2 : len(sub[2])-1])
			for len(v) < w {
				v = "0" + v
			}
		}
		return v
	})
	if err == nil && strings.Count(out, "$") > strings.Count(tmpl, "$$") {
		err = fmt.Errorf("unknown identifier in %q", tmpl)
	}
	return out, err
}

var isoDuration = regexp.MustCompile(`^P(?:([0-9.]+)Y)?(?:([0-9.]+)M)?(?:([0-9.]+)D)?(?:T(?:([0-9.]+)H)?(?:([0-9.]+)M)?(?:([0-9.]+)S)?)?$`)

// parseDuration reads an xs:duration (PnYnMnDTnHnMnS) in seconds; years
// and months count 365 and 30 days.
func parseDuration(s string) (float64, error) {
	m := isoDuration.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil || s == "P" || strings.HasSuffix(s, "T") {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	unit := []float64{365 * 86400, 30 * 86400, 86400, 3600, 60, 1}
	total := 0.0
	for i, u := range unit {
		if m[i+1] == "" {
			continue
		}
		v, err := strconv.ParseFloat(m[i+1], 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration", s)
		}
		total += v * u
	}
	return total, nil
}
