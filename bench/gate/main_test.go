package main

import (
	"strings"
	"testing"
)

// A benchstat CSV (golang.org/x/perf at the pinned version) with one significant slowdown of
// 20%, one insignificant one, one of 5%, an allocation rise and a benchmark only the new side has.
const sample = `,old.txt,,new.txt,,,
,sec/op,CI,sec/op,CI,vs base,P
Slow,1e-06,1%,1.2e-06,1%,+20.00%,p=0.002 n=6
Noisy,1e-06,30%,1.3e-06,40%,~,p=0.240 n=6
Slight,1e-06,1%,1.05e-06,1%,+5.00%,p=0.002 n=6
Faster,1e-06,1%,0.5e-06,1%,-50.00%,p=0.002 n=6
New,,,1e-06,1%,,
geomean,1e-06,,1.1e-06,,+10.00%,

,old.txt,,new.txt,,,
,allocs/op,CI,allocs/op,CI,vs base,P
Slow,0,0%,0,0%,~,p=1.000 n=6
Slight,0,0%,1,0%,~,p=0.002 n=6
`

func TestVerdict(t *testing.T) {
	problems, err := verdict(sample, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 2 || !strings.HasPrefix(problems[0], "Slow: median time per op +20.0%") ||
		!strings.HasPrefix(problems[1], "Slight: allocations per op rose from 0 to 1") {
		t.Fatalf("problems %q: want the 20%% slowdown and the allocation rise only", problems)
	}
	if p, _ := verdict(sample, 25); len(p) != 1 {
		t.Fatalf("with a 25%% threshold: %q, want only the allocation rise", p)
	}
}
