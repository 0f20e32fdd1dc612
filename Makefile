# fksteer's two entry points are `make demo` (install ONNX Runtime, build, generate images with
# the built-in model) and `make test` (the whole test suite, as CI runs it).

GO      ?= go
BIN     := bin/fksteer
PROMPT  ?= the letters "fk"

.PHONY: all ort build demo test test-nocgo vet bench gpu-check clean fuzz fuzz-smoke e2e-deps

all: build

# ONNX Runtime's shared library, fetched from the npm registry and checked against its sha256.
ort:
	@scripts/install-ort.sh

build:
	$(GO) build -o $(BIN) ./cmd/fksteer

# The npm packages of the server's end-to-end tests (playwright-core, the official openai
# client), pinned by server/e2e/package-lock.json; the browser is Debian's chromium
# (scripts/install-browser.sh).
e2e-deps:
	@command -v npm >/dev/null || { echo "e2e-deps: npm is missing (Debian: apt-get install npm)"; exit 1; }
	npm ci --prefix server/e2e --ignore-scripts --no-audit --no-fund --loglevel=error

demo: ort build
	$(BIN) generate --prompt '$(PROMPT)' --num-images 8 --out out/demo

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# The large statistical tests (exactness of FK and DTS on glyphs, 40 MNIST samples per sampler) skip under
# -race, whose instrumentation slows their Go loops ~10x; the second pass runs them without it,
# verbosely, so the distances they measure are in the log.
STATISTICAL := TestUnsteered|TestFKIsExact|TestAdaptiveFK|TestMNISTConditional|TestDTS|TestGaussianStochasticChains
# The suites that run the CLI as child processes skip under -race too (cmd/fksteer/race_on_test.go).
CHILDREN := TestBadInputs|TestSignalsStopEveryCommand

# The packages that build and test without cgo, so without ONNX Runtime: the maths (schedule,
# sampler/step, particles, potentials, pixels) and the leaf helpers. Listing them here keeps them
# so: a cgo import reaching one of them fails this target.
NOCGO := ./batch/ ./internal/atomicfile/ ./internal/enum/ ./internal/filehash/ ./internal/keys/ \
	./internal/lockfile/ ./internal/pngtext/ ./internal/testimages/ ./models/onnxpb/ ./particles/ \
	./pixels/ ./potentials/ ./sampler/step/ ./schedule/ ./tokenizers/hfconfig/

test-nocgo:
	CGO_ENABLED=0 $(GO) test $(NOCGO)
test: test-nocgo

# The WebGPU tests (models' conformance suite, the generate comparisons, the GPU check) run where
# a Vulkan adapter exists; CI installs Mesa's software one first (scripts/install-vulkan.sh).
test: ort vet build e2e-deps
	$(GO) test -race -timeout 30m ./...
	$(GO) test -v -timeout 30m -run '$(STATISTICAL)' ./sampler/
	$(GO) test -timeout 30m -run '$(CHILDREN)' ./cmd/fksteer/
	FKSTEER=$(BIN) scripts/gpu-check.sh --quick
	$(MAKE) --no-print-directory fuzz-smoke

# The GPU measurements of docs/gpu.md, on a machine with a GPU.
gpu-check: ort build
	FKSTEER=$(BIN) scripts/gpu-check.sh

# Every native Go fuzz target (func FuzzXxx(f *testing.F) in a _test.go file), each run alone for
# FUZZTIME, since go test -fuzz takes one target per run; docs/fuzzing.md lists them and what the
# long runs found. Their seed corpora (testdata/fuzz/FuzzXxx/) also run in every plain go test.
# FUZZFLAGS passes more flags (-parallel=1 on a shared machine).
FUZZTIME  ?= 60s
FUZZFLAGS ?=

fuzz:
	@set -e; for f in $$(git ls-files -co --exclude-standard '*_test.go' | xargs grep -lE '^func Fuzz[[:alnum:]_]*\(f \*testing\.F\)' | sort); do \
		for name in $$(sed -nE 's/^func (Fuzz[[:alnum:]_]*)\(f \*testing\.F\).*/\1/p' $$f); do \
			echo "== $$name in ./$$(dirname $$f)/ for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./$$(dirname $$f)/; \
		done; \
	done

# What CI runs (make test): every fuzz target for a few seconds' worth of inputs. A count, not a
# duration: when a time limit ends while a worker is mid-input, go test can report the deadline
# itself as a failure ("context deadline exceeded", no failing input), which would fail CI for
# nothing; a count ends the run without a deadline.
FUZZSMOKE ?= 500x
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZSMOKE)

bench: ort
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

clean:
	rm -rf bin out
