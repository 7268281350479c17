# dwell: the two commands a newcomer needs are `make demo` and `make test`.
# Everything here needs only Go (1.26+); modules are fetched by the go command.

GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 30s
BENCHTIME ?= 1s
COUNT     ?= 6

.PHONY: all build demo test test-short lint fuzz bench clean

all: lint test

build:
	$(GO) build -o bin/dwell ./cmd/dwell

## demo: generate a realistic sample and process it, showing every output stream
demo:
	$(GO) run ./cmd/dwell demo

## test: every test with the race detector, fuzz seed corpora included; then the 200k-event
## crash test once without it (under -race it runs on 30k events)
test:
	$(GO) test -race -count=1 $(PKGS)
	$(GO) test -count=1 -run 'TestLiveRepeatedCrashes' ./pipeline

## test-short: the same without -race, for a quick loop
test-short:
	$(GO) test -count=1 $(PKGS)

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	$(GO) test ./operators -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./operators -run '^$$' -fuzz '^FuzzParseTime$$' -fuzztime $(FUZZTIME)

## bench: the throughput benchmarks on one core, COUNT times, into bench-new.txt (compare
## two such files with benchstat)
bench:
	$(GO) test ./bench ./operators/... -run '^$$' -bench . -benchtime $(BENCHTIME) -cpu 1 -count $(COUNT) | tee bench-new.txt

clean:
	rm -rf bin bench-*.txt
