package collect

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/dwellhq/dwell/operators"
)

// trackerPayloads are what trackers send: Tracardi's documented tracker payload (metadata,
// options, properties and per-event options the processor ignores), dwell's tracker's, a
// server's with a profile, and broken ones.
var trackerPayloads = []string{
	`{"source":{"id":"3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"},"session":{"id":"bfb3-bf0c8c8d3387-3ee63fc6-490a-4fd8"},
	  "metadata":{"ip":"254.23.12.188"},"profile":{"id":"bf0c8c8d3387-3ee63fc6-490a-4fd8bfb3"},
	  "context":{"system":"webstore-backend","webstore":{"url":"http://magento-store.com","name":"Shoe store"},"client":{"browser":"Mozilla Firefox"}},
	  "properties":{},
	  "events":[{"type":"page-view","properties":{"pageTitle":"My Page"},"options":{"saveEvent":false,"saveSession":false,"debugger":false}},
	            {"type":"consent-granted","properties":{"marketing":false,"general":true},"options":{"profile":true,"saveSession":false}},
	            {"type":"product-in-basket","properties":{"product":"Adidas sneakers","price":34.43},"options":{"profile":false,"logs":false}}],
	  "options":{}}`,
	`{"source":{"id":"demo-shop"},"session":{"id":"5b0c0d1e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"},
	  "events":[{"id":"0c1d2e3f-4a5b-4c6d-8e7f-8a9b0c1d2e3f","type":"page-view","properties":{},
	             "context":{"page":{"url":"http://localhost:8686/","title":"dwell demo shop","referrer":"","path":"/"},
	                        "device":{"type":"desktop"},"browser":{"language":"en-US"},"screen":{"width":1280,"height":800}}}]}`,
	`{"source":"crm","profile":"p-1","time":"2026-12-07T10:00:00Z","events":[{"type":"purchase","time":1765101600000,"properties":{"total":12.5}},{"type":"logout"}]}`,
	`{"source":"web","profile":null,"session":"s","events":[{"type":"a","profile":"own"}]}`,
	`{"source":"web","events":[{"type":"a"},{"type":"b","events":[]}]}`,
	`{"source":"web","events":[{"type":"a","time":"not a time"}]}`,
	`{"source":"web","events":[1,"x",null]}`,
	`{"source":"web","events":{}}`,
	`{"source":"web","events":[{"type":"visit-started"}]}`,
	`{"source":"web","session":"s\u00e9\ud800","events":[{"type":"a"}]}`,
	`{"source":"w","events":[{"type":"a"}]   `,
	`{"source":"w","events":[{"type":"a"}],}`,
}

// FuzzCheck: check never panics, and whatever the collector accepts the processor accepts:
// the record value (with the minted profile) decodes as a batch of that source and profile
// whose every element decodes without error, the same number of them, with the ids the
// collector answered where the request gave its own.
func FuzzCheck(f *testing.F) {
	for _, s := range trackerPayloads {
		f.Add([]byte(s))
	}
	small := operators.Config{MaxEventBytes: 512, MaxDepth: 5, MaxIDBytes: 40} // ids: minted profiles are 36 bytes
	checkers := []*decoders{newDecoders(operators.Config{}), newDecoders(small)}
	small.EnsureDefaults()
	var def operators.Config
	def.EnsureDefaults()
	procs := []*operators.Decoder{operators.NewDecoder(&def), operators.NewDecoder(&small)}
	const now = 1765101600000
	f.Fuzz(func(t *testing.T, body []byte) {
		for i, ds := range checkers {
			p, cerr := ds.check("events", body, now, 20)
			if cerr != nil {
				if cerr.Reason == "" || cerr.Message == "" {
					t.Fatalf("checker %d: an error without reason or message: %+v", i, cerr)
				}
				if b, err := json.Marshal(cerr); err != nil || !json.Valid(b) {
					t.Fatalf("checker %d: the error does not encode: %v", i, err)
				}
				continue
			}
			if p.profile == "" {
				p.profile, p.minted = mintProfile(p.source, p.session), true
			}
			value := p.value(now)
			rec := operators.Record{Topic: "events", Partition: 2, Offset: 77, Value: value, Timestamp: now}
			var batch, ev operators.Event
			d := procs[i]
			if err := d.Decode(&rec, &batch); err != operators.ErrBatch {
				t.Fatalf("checker %d accepted %q, but the processor reads %q as %v", i, body, value, err)
			}
			if string(batch.Profile) != p.profile || string(batch.Source) != p.source || p.source == "" {
				t.Fatalf("checker %d: profile %q source %q, the processor reads %q %q", i, p.profile, p.source, batch.Profile, batch.Source)
			}
			n := 0
			d.Elements(&rec, &batch, &ev, func(index int, elem []byte, ev *operators.Event, err *operators.DecodeError) {
				n++
				if err != nil {
					t.Fatalf("checker %d accepted %q; the processor dead-letters its element %d (%q): %v", i, body, index, elem, err)
				}
				if own := p.ids[index]; own != nil && string(own) != string(ev.ID) {
					t.Fatalf("element %d: own id %q, processor's %q", index, own, ev.ID)
				}
				for _, e := range p.timeless {
					if e.index == index && ev.Time != now+int64(index) {
						t.Fatalf("timeless element %d has time %d, want %d", index, ev.Time, now+int64(index))
					}
				}
			})
			if n != p.events || n == 0 || n > 20 {
				t.Fatalf("checker %d counted %d events, the processor %d", i, p.events, n)
			}
		}
	})
}

func TestFieldOf(t *testing.T) {
	for detail, want := range map[string]string{
		"events[1]: properties must be an object": "events[1].properties",
		"events[0]: no type field":                "events[0]",
		"profile is longer than 512 bytes":        "profile",
		"context at byte 12":                      "context",
		"event at byte 3":                         "",
		"empty value":                             "",
		"events[12]: time: not a time":            "events[12].time",
	} {
		if got := fieldOf(detail); got != want {
			t.Errorf("fieldOf(%q) = %q, want %q", detail, got, want)
		}
	}
	if !strings.HasPrefix(mintProfile("a", ""), "") || mintProfile("a", "s") != mintProfile("a", "s") || mintProfile("a", "s") == mintProfile("b", "s") ||
		mintProfile("a", "") == mintProfile("a", "") || len(mintProfile("a", "s")) != 36 {
		t.Error("minted profiles: derived ones are stable per source and session, random ones differ, all are UUID-shaped")
	}
}
