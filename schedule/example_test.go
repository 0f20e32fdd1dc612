package schedule_test

import (
	"fmt"

	"github.com/fksteer/fksteer/schedule"
)

func ExampleTimesteps() {
	sd, _ := schedule.Timesteps(schedule.Leading, 1000, 10, 1)    // Stable Diffusion 1.5
	turbo, _ := schedule.Timesteps(schedule.Trailing, 1000, 4, 1) // SD-Turbo
	even, _ := schedule.Timesteps(schedule.Linspace, 1000, 4, 0)
	fmt.Println(sd)
	fmt.Println(turbo)
	fmt.Println(even)
	// Output:
	// [901 801 701 601 501 401 301 201 101 1]
	// [999 749 499 249]
	// [999 666 333 0]
}

func ExampleFlow_Levels() {
	levels, _ := schedule.Flow{Shift: 3}.Levels(4)
	for _, l := range levels {
		fmt.Printf("t=%.3f alpha=%.3f sigma=%.3f\n", l.Time, l.Alpha, l.Sigma)
	}
	// Output:
	// t=1.000 alpha=0.000 sigma=1.000
	// t=0.900 alpha=0.100 sigma=0.900
	// t=0.750 alpha=0.250 sigma=0.750
	// t=0.500 alpha=0.500 sigma=0.500
	// t=0.000 alpha=1.000 sigma=0.000
}

func ExampleParseScheduler() {
	// stabilityai/sd-turbo's scheduler/scheduler_config.json (LoadScheduler reads it from the folder).
	config := []byte(`{"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012,
		"beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
		"prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "trailing"}`)
	s, err := schedule.ParseScheduler(config)
	if err != nil {
		fmt.Println(err)
		return
	}
	rule, eta := s.Rule()
	fmt.Println(s.Kind, rule, eta)
	levels, _ := s.Levels(4)
	for _, l := range levels {
		fmt.Printf("t=%v sigma=%.4f\n", l.Time, l.Sigma/l.Alpha)
	}
	// Output:
	// euler euler 0
	// t=999 sigma=14.6146
	// t=749 sigma=4.0817
	// t=499 sigma=1.6129
	// t=249 sigma=0.6932
	// t=-1 sigma=0.0000
}

func ExampleScheduler_With() {
	// Stable Diffusion 1.5 ships PNDM; --scheduler dpm++2m keeps its betas, leading spacing and
	// steps offset. DPM-Solver's leading spacing takes n of n+1 points: 1000 // 6 = 166, so
	// 5*166+1, 4*166+1, ..., 1*166+1.
	sd15 := []byte(`{"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
		"beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false,
		"skip_prk_steps": true, "steps_offset": 1}`)
	s, _ := schedule.ParseScheduler(sd15)
	kind, _ := schedule.ParseSchedulerKind("dpm++2m")
	dpm := s.With(kind)
	levels, _ := dpm.Levels(5)
	for _, l := range levels {
		fmt.Printf("t=%v sigma=%.4f\n", l.Time, l.Sigma/l.Alpha)
	}
	// Output:
	// t=831 sigma=5.9064
	// t=665 sigma=2.9071
	// t=499 sigma=1.6129
	// t=333 sigma=0.9324
	// t=167 sigma=0.4947
	// t=-1 sigma=0.0000
}
