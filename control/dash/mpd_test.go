package dash

import (
	"strings"
	"testing"
)

const timelineMPD = `<?xml version="1.0" encoding="utf-8"?>
<!-- made by hand -->
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:x="urn:example"
	xsi:schemaLocation="urn:mpeg:DASH:schema:MPD:2011 DASH-MPD.xsd" type="static" mediaPresentationDuration="PT6S" x:custom="a&amp;b">
	<Period id="p0" duration="PT6S">
		<BaseURL>media/</BaseURL>
		<AdaptationSet contentType="video">
			<x:Unknown keep="yes">text &lt; kept</x:Unknown>
			<SegmentTemplate timescale="1000" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/t$Time$-$Number%03d$.m4s" startNumber="5">
				<SegmentTimeline><S t="0" d="2000" r="1"/><S d="2000"/></SegmentTimeline>
			</SegmentTemplate>
			<Representation id="v1" bandwidth="1000"/>
		</AdaptationSet>
		<AdaptationSet contentType="audio">
			<AudioChannelConfiguration value="2"/>
			<Representation id="a1" bandwidth="64">
				<SegmentList><Initialization sourceURL="a/init.mp4"/><SegmentURL media="a/1.m4s"/><SegmentURL media="a/2.m4s"/></SegmentList>
			</Representation>
		</AdaptationSet>
	</Period>
</MPD>
`

func TestRoundTripKeepsEverything(t *testing.T) {
	m, err := Parse([]byte(timelineMPD))
	if err != nil {
		t.Fatal(err)
	}
	out := string(m.Bytes())
	for _, want := range []string{`<!-- made by hand -->`, `xsi:schemaLocation="urn:mpeg:DASH:schema:MPD:2011 DASH-MPD.xsd"`,
		`x:custom="a&amp;b"`, `<x:Unknown keep="yes">text &lt; kept</x:Unknown>`, `<?xml version="1.0" encoding="utf-8"?>`,
		`<S t="0" d="2000" r="1"/>`} {
		if !strings.Contains(out, want) {
			t.Fatalf("round trip lost %q:\n%s", want, out)
		}
	}
	again, err := Parse([]byte(out))
	if err != nil || string(again.Bytes()) != out {
		t.Fatalf("a second round trip changes the MPD: %v", err)
	}
}

func TestRepresentations(t *testing.T) {
	m, _ := Parse([]byte(timelineMPD))
	reps, err := m.Representations(func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 2 {
		t.Fatalf("%d representations", len(reps))
	}
	v := reps[0]
	if v.Init != "media/v1/init.mp4" || strings.Join(v.Segments, " ") != "media/v1/t0-005.m4s media/v1/t2000-006.m4s media/v1/t4000-007.m4s" {
		t.Fatalf("timeline: init %q segments %v", v.Init, v.Segments)
	}
	a := reps[1]
	if a.Init != "media/a/init.mp4" || strings.Join(a.Segments, " ") != "media/a/1.m4s media/a/2.m4s" {
		t.Fatalf("list: init %q segments %v", a.Init, a.Segments)
	}
}

func TestInsertEarlyAfterAudioChannelConfiguration(t *testing.T) {
	m, _ := Parse([]byte(timelineMPD))
	as := m.Root.Child("Period").Children("AdaptationSet")[1]
	as.InsertEarly(NewNode("ContentProtection", "schemeIdUri", "urn:mpeg:dash:mp4protection:2011", "cenc:default_KID", "k"))
	m.SetNamespace("cenc", "urn:mpeg:cenc:2013")
	out := string(m.Bytes())
	acc := strings.Index(out, "<AudioChannelConfiguration")
	cp := strings.Index(out, "<ContentProtection")
	rep := strings.Index(out, `<Representation id="a1"`)
	if !(acc < cp && cp < rep) || !strings.Contains(out, `xmlns:cenc="urn:mpeg:cenc:2013"`) {
		t.Fatalf("ContentProtection misplaced:\n%s", out)
	}
}

func TestTemplateByDuration(t *testing.T) {
	const mpd = `<MPD type="static" mediaPresentationDuration="PT4.0S"><Period><AdaptationSet><Representation id="0" bandwidth="1">
<SegmentTemplate timescale="1000000" duration="1000000" initialization="init-$RepresentationID$.m4s" media="c-$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>
</Representation></AdaptationSet></Period></MPD>`
	m, err := Parse([]byte(mpd))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for i := 1; i <= 5; i++ { // one more than the duration implies, as ffmpeg writes audio
		have["c-0-0000"+string(rune('0'+i))+".m4s"] = true
	}
	reps, err := m.Representations(func(u string) bool { return have[u] })
	if err != nil || len(reps[0].Segments) != 5 {
		t.Fatalf("%v %v", err, reps)
	}
	delete(have, "c-0-00003.m4s")
	if _, err := m.Representations(func(u string) bool { return have[u] }); err == nil || !strings.Contains(err.Error(), "c-0-00003.m4s") {
		t.Fatalf("a missing segment must be named: %v", err)
	}
}

func TestRejects(t *testing.T) {
	for name, mpd := range map[string]string{
		"live":      `<MPD type="dynamic"><Period><AdaptationSet><Representation id="a"/></AdaptationSet></Period></MPD>`,
		"base":      `<MPD type="static" mediaPresentationDuration="PT1S"><Period><AdaptationSet><Representation id="a"><SegmentBase indexRange="1-2"/></Representation></AdaptationSet></Period></MPD>`,
		"absolute":  `<MPD type="static"><BaseURL>http://cdn/x/</BaseURL><Period><AdaptationSet><Representation id="a"/></AdaptationSet></Period></MPD>`,
		"malformed": `<MPD><Period>`,
		"notmpd":    `<html/>`,
	} {
		m, err := Parse([]byte(mpd))
		if err == nil {
			_, err = m.Representations(func(string) bool { return true })
		}
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
}

func TestTimelineRepeatToEnd(t *testing.T) {
	const mpd = `<MPD type="static" mediaPresentationDuration="PT9S"><Period><AdaptationSet><Representation id="v" bandwidth="1">
<SegmentTemplate timescale="10" initialization="i.mp4" media="t$Time$.m4s"><SegmentTimeline><S t="0" d="20" r="-1"/></SegmentTimeline></SegmentTemplate>
</Representation></AdaptationSet></Period></MPD>`
	m, err := Parse([]byte(mpd))
	if err != nil {
		t.Fatal(err)
	}
	reps, err := m.Representations(func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(reps[0].Segments, " "); got != "t0.m4s t20.m4s t40.m4s t60.m4s t80.m4s" {
		t.Fatalf("S@r -1 over 9 s of 2 s segments: %s", got)
	}
}
