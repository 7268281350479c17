# dwell: the two commands a newcomer needs are `make demo` and `make test`.
# Everything here needs only Go (1.26+); modules are fetched by the go command.

GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 30s
BENCHTIME ?= 1s
COUNT     ?= 6

KAFKA_DIR      ?= /tmp/dwell-kafka
KAFKA_TEST_DIR ?= /tmp/dwell-kafka-test
BROKERS        ?= 1
HARNESS        := $(GO) run ./deploy/kafka/cmd/kafka-harness

HELM_VERSION ?= v4.3.2
HELM_DIR     ?= $(HOME)/.cache/dwell/helm-$(HELM_VERSION)

.PHONY: all build image helm demo test test-short test-kafka kafka-up kafka-down lint fuzz bench bench-gate clean

all: lint test

## build: bin/dwell, stamped with the version and commit (dwell version, dwell_build_info): the
## go command stamps none where VCS stamping is off (GOFLAGS=-buildvcs=false, no .git)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.buildVersion=$(VERSION) -X main.buildCommit=$(COMMIT)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/dwell ./cmd/dwell

## image: dwell's container image as an OCI archive, dist/dwell-oci.tar, built without a Docker
## daemon (deploy/image, go-containerregistry): the static binary (CGO_ENABLED=0) on an empty
## base with the CA certificates and a non-root user; then TestImage inspects it. Load it with
## `docker load -i` (25+), `podman load -i`, or push it with skopeo (oci-archive:...).
## GOARCH=arm64 make image for arm64. The Dockerfile builds the same for Docker users.
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o bin/dwell-linux-$(IMAGE_ARCH) ./cmd/dwell
	$(GO) run ./deploy/image --binary bin/dwell-linux-$(IMAGE_ARCH) --arch $(IMAGE_ARCH) --out dist/dwell-oci.tar --version $(VERSION) --commit $(COMMIT)
	DWELL_IMAGE=dist/dwell-oci.tar $(GO) test -count=1 -run '^TestImage$$' ./deploy/image

## helm: Helm $(HELM_VERSION), built from its Go module (pinned) into $(HELM_DIR) once; the chart
## tests (deploy/helm) use it and skip, saying so, without it. About 5 minutes on the 2-core
## machine the first time (module downloads included), nothing after.
helm:
	@test -x $(HELM_DIR)/helm || { echo "building helm $(HELM_VERSION) into $(HELM_DIR)"; \
		GOFLAGS= GOBIN=$(HELM_DIR) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION); }
	@$(HELM_DIR)/helm version --short

## demo: the live pipeline on an embedded test broker, a summary every second; Ctrl-C ends it.
## Built, then run: go run exits 1 when interrupted, whatever its program exits with, so a clean
## Ctrl-C would end in "make: *** Error 1".
demo: build
	bin/dwell demo

## test: every test with the race detector, fuzz seed corpora included; then the 200k-event
## crash and reset tests once without it (under -race they run on 30k and 5k events)
test:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -count=1 -run 'TestLiveRepeatedCrashes|TestLiveResetToEarliest' ./pipeline

## test-kafka: the Kafka suites on a real Apache Kafka (fetched from Maven Central; needs java,
## mvn and kcat): the end-to-end (dwell collect's too), crash, rebalance, reset, metrics, CLI, kcat, cart-abandonment
## (rules across a crash and a rebalance), scheduled jobs (TestLiveJobsExactlyOnce, 14s), config
## topic, deliver, move, log and topics tests that make test runs on kfake, the README's Using it
## run verbatim (its own make kafka-up and go build, about 60s), then the fault suite (kills of
## dwell, of dwell collect under load, and of brokers, scaling, scheduled jobs on the wall clock: a real-time row of about
## 80s), which prints a table. The broker is stopped afterwards, also when a test fails.
## TestDeliverRebalance stays on kfake: on a real broker the first deliverer can finish the
## whole queue before the second one's join triggers a rebalance, so it would test nothing.
## TestLiveJobForEachOnce (20k keys) stays on kfake: the fault suite's jobs row sweeps 226k
## profiles on the real broker.
test-kafka:
	@command -v kcat >/dev/null || { echo "test-kafka: kcat is not installed (Debian: apt-get install kcat)" >&2; exit 1; }
	@$(HARNESS) down --dir $(KAFKA_TEST_DIR) 2>/dev/null || true
	@addr=$$($(HARNESS) up --dir $(KAFKA_TEST_DIR)) || exit 1; \
	trap '$(HARNESS) down --dir $(KAFKA_TEST_DIR)' EXIT; \
	echo "== Kafka integration suite on $$addr"; \
	DWELL_TEST_BROKERS=$$addr $(GO) test -count=1 -timeout 20m \
		-run '^(TestLive|TestCollectEndToEnd|TestCollectSigkill|TestReset|TestSavepoints|TestCart|TestRunAgainstKafka|TestReadmeUsingIt|TestKcatInterop|TestDeliver|TestMove|TestLogSearch|TestRunConfigTopic|TestConfigApply|TestTopic|TestScan)' \
		-skip '^(TestDeliverRebalance|TestLiveJobForEachOnce)$$' \
		./pipeline ./pipeline/reset ./pipeline/deliver ./pipeline/rulesrc ./pipeline/topicscan ./cmd/dwell || exit 1; \
	echo "== fault suite"; \
	DWELL_FAULT_SUITE=1 $(GO) test -count=1 -timeout 30m -run '^TestFaults$$' -v ./cmd/dwell

## kafka-up: start Apache Kafka (KRaft) on loopback in the background and print
## `export DWELL_BROKERS=127.0.0.1:PORT`, so that `eval "$(make -s kafka-up)"` points every dwell
## command at it (the harness's logs go to stderr; the plain address is in $(KAFKA_DIR)/bootstrap).
## BROKERS=3 for a cluster. kafka-down stops it.
kafka-up:
	@addr=$$($(HARNESS) up --dir $(KAFKA_DIR) --brokers $(BROKERS)) || exit 1; \
	echo "export DWELL_BROKERS=$$addr"

kafka-down:
	$(HARNESS) down --dir $(KAFKA_DIR)

## test-short: the same without -race, for a quick loop
test-short:
	$(GO) test -count=1 $(PKGS)

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## fuzz: run every fuzz target in the tree (found by name, so a new one is never left out) for
## FUZZTIME each
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$(dirname $$f) $$t"; \
			$(GO) test ./$$(dirname $$f) -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME); \
		done; \
	done

## bench: the throughput benchmarks on one core, COUNT times, into bench-new.txt (compare
## two such files with benchstat)
bench:
	$(GO) test ./bench ./operators/... -run '^$$' -bench '^Benchmark(Decode|DecodeStdlib|Sessionize|DecodeSessionize|Process|NexmarkQ11|Reschedule|Advance)$$' \
		-benchtime $(BENCHTIME) -cpu 1 -count $(COUNT) | tee bench-new.txt

## bench-gate: build the in-process benchmarks of BASE (default: the merge-base with main) in a
## git worktree and of the working tree, run them interleaved COUNT (>= 6) times on one core,
## compare with benchstat (pinned, via go run); fail on a significant median slowdown over 10%
## or any rise in allocs/op. GATE_SHORT=1: the CI budget (a subset, small warm state, ~1.5 min).
bench-gate:
	$(GO) run ./bench/gate -count $(COUNT) $(if $(BASE),-base $(BASE)) $(if $(GATE_SHORT),-short) \
		$(if $(filter command line environment,$(origin BENCHTIME)),-benchtime $(BENCHTIME))

clean:
	rm -rf bin bench-*.txt
