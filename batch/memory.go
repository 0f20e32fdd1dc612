package batch

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// AvailableMemory is the memory this process may still use, in bytes, and whether it could be
// read: the figure batch bounds its workers by ([AutoWorkers]), for callers that check a run's
// size against it before starting.
func AvailableMemory() (avail uint64, ok bool) { return availableMemory() }

// availableMemory is the memory this process may still use, in bytes: the smaller of the
// container's remaining allowance (cgroup v2 memory.max - memory.current, or cgroup v1's
// limit - usage) and the machine's MemAvailable. ok is false where neither can be read (not
// Linux), and the caller then bounds workers by cores alone.
func availableMemory() (avail uint64, ok bool) {
	if v, found := meminfoAvailable(); found {
		avail, ok = v, true
	}
	for _, pair := range [][2]string{
		{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
		{"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"},
	} {
		limit, err1 := readUint(pair[0])
		used, err2 := readUint(pair[1])
		if err1 != nil || err2 != nil || limit == 0 || limit >= 1<<60 {
			continue // no limit ("max", or v1's huge sentinel)
		}
		left := uint64(0)
		if limit > used {
			left = limit - used
		}
		if !ok || left < avail {
			avail, ok = left, true
		}
		break
	}
	return avail, ok
}

func readUint(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}

func meminfoAvailable() (uint64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0, false
			}
			return kb * 1024, true
		}
	}
	return 0, false
}
