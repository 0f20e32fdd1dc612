package main

import (
	"encoding/json"
	"fmt"
	"io"
	goruntime "runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fksteer/fksteer/internal/filehash"
	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/vulkan"
)

func (a *app) doctorCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Show the ONNX Runtime library, its execution providers, the GPU adapter and what auto picks",
		Long: `Reports what fksteer would run on: the ONNX Runtime library (path, version, and whether it is
the pinned build), which execution providers it has and whether each runs here (a small model is
run on each), the Vulkan devices WebGPU can use (vendor, device, driver) or exactly why there are
none, the Vulkan driver files, the thread count, and which provider --provider auto picks and why.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.doctor() },
	}
	addFlags(cmd.Flags(), pick(samplingSettings, "json"))
	return cmd
}

// doctorReport is what `fksteer doctor --json` prints.
type doctorReport struct {
	Library struct {
		Path    string `json:"path"`
		Version string `json:"version"`
		SHA256  string `json:"sha256"`
		// Pinned: the library is the build scripts/install-ort.sh installs.
		Pinned bool   `json:"pinned"`
		Error  string `json:"error,omitempty"`
	} `json:"onnxruntime"`
	Providers []models.ProviderStatus `json:"providers"`
	Vulkan    struct {
		Devices   []vulkan.Device   `json:"devices"`
		Manifests []vulkan.Manifest `json:"manifests"`
		// Error says why Vulkan shows no device.
		Error string `json:"error,omitempty"`
	} `json:"vulkan"`
	Threads struct {
		Cores      int `json:"cores"`
		Configured int `json:"configured"`
	} `json:"threads"`
	Auto models.AutoChoice `json:"auto"`
}

func (a *app) doctor() error {
	var r doctorReport
	vk := vulkan.Probe()
	r.Vulkan.Devices, r.Vulkan.Manifests = vk.Devices, vk.Manifests
	if vk.Err != nil {
		r.Vulkan.Error = vk.Err.Error()
	}
	r.Threads.Cores, r.Threads.Configured = goruntime.NumCPU(), a.v.GetInt("threads")
	if err := models.Init(a.v.GetString("ort-lib")); err != nil {
		// Still worth printing: the Vulkan half of the report does not need the library.
		r.Library.Error = err.Error()
	} else {
		r.Library.Path, r.Library.Version = models.LibraryPath(), models.LoadedVersion()
		if sum, _, err := filehash.SHA256(r.Library.Path); err == nil {
			r.Library.SHA256 = sum
			r.Library.Pinned = sum == models.RuntimeSHA256
		}
		for _, p := range []models.Provider{models.CPU, models.WebGPU, models.CUDA, models.TensorRT, models.OpenVINO} {
			r.Providers = append(r.Providers, models.CheckProvider(p))
		}
		r.Auto = models.ChooseAuto()
	}
	if a.v.GetBool("json") {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printDoctor(a.stdout, r)
	return nil
}

func printDoctor(w io.Writer, r doctorReport) {
	fmt.Fprintln(w, "ONNX Runtime")
	if r.Library.Error != "" {
		fmt.Fprintf(w, "  not loaded: %s\n", r.Library.Error)
	} else {
		pinned := "not the pinned build (" + models.RuntimeVersion + ")"
		if r.Library.Pinned {
			pinned = "the pinned build"
		}
		fmt.Fprintf(w, "  %s\n  version %s, sha256 %s, %s\n", r.Library.Path, r.Library.Version, r.Library.SHA256, pinned)
	}
	fmt.Fprintln(w, "\nExecution providers")
	for _, p := range r.Providers {
		state := "runs"
		switch {
		case !p.InLibrary:
			state = "not in this library"
		case !p.Runs:
			state = "in the library, does not run here"
		}
		fmt.Fprintf(w, "  %-9s %s\n", p.Provider, state)
		if p.Detail != "" && p.InLibrary {
			fmt.Fprintf(w, "            %s\n", oneLine(p.Detail, 300))
		}
	}
	fmt.Fprintln(w, "\nWebGPU adapters (Vulkan devices)")
	if r.Vulkan.Error != "" {
		fmt.Fprintf(w, "  none: %s\n", r.Vulkan.Error)
	}
	for _, d := range r.Vulkan.Devices {
		note := ""
		if !d.Type.Hardware() {
			note = " — software: slower than the CPU provider, never picked by auto"
		}
		fmt.Fprintf(w, "  %s: %s, vendor %s, Vulkan %s, driver %s %s%s\n", d.Name, d.TypeName, d.Vendor, d.APIVersion, d.Driver, d.DriverInfo, note)
	}
	fmt.Fprintln(w, "\nVulkan driver files")
	if len(r.Vulkan.Manifests) == 0 {
		fmt.Fprintf(w, "  none (searched %s)\n", strings.Join(vulkan.ManifestDirs(), ", "))
	}
	for _, m := range r.Vulkan.Manifests {
		if m.Error != "" {
			fmt.Fprintf(w, "  %s: %s\n", m.Path, m.Error)
			continue
		}
		fmt.Fprintf(w, "  %s -> %s (Vulkan %s)\n", m.Path, m.Library, m.APIVersion)
	}
	threads := "ONNX Runtime's choice"
	if r.Threads.Configured > 0 {
		threads = fmt.Sprint(r.Threads.Configured)
	}
	fmt.Fprintf(w, "\nThreads: %d cores; intra-op threads: %s\n", r.Threads.Cores, threads)
	if r.Auto.Provider != "" {
		fmt.Fprintf(w, "\n--provider auto picks %s: %s\n", r.Auto.Provider, r.Auto.Reason)
	}
}

// oneLine flattens s to one line of at most n characters.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}
