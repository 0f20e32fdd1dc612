package rewards

import (
	"slices"
	"testing"
)

// The expected values in this file are OpenCV 4.6's (cv2.resize and cv2.warpPerspective run on
// the same 8-bit inputs); fksteer must reproduce them exactly, because PaddleOCR's recogniser
// reads the 8-bit images these functions make.

// goldenPlane is a 5 x 7 plane of varied values: (37*i + 11) mod 256.
func goldenPlane() []uint8 {
	p := make([]uint8, 35)
	for i := range p {
		p[i] = uint8((i*37 + 11) % 256)
	}
	return p
}

// TestResizeLinear8: shrinking, enlarging and both at once, as cv2.resize(INTER_LINEAR)
// rounds them.
func TestResizeLinear8(t *testing.T) {
	for _, tc := range []struct {
		h, w int
		want []uint8
	}{
		{3, 4, []uint8{26, 90, 155, 220, 31, 96, 160, 225, 36, 100, 165, 230}},
		{8, 13, []uint8{11, 22, 42, 62, 82, 102, 122, 142, 162, 182, 202, 222, 233, 12, 24, 44, 64, 83, 103, 123, 143, 163, 183, 203, 223, 234, 14, 26, 45, 65, 85, 105, 125, 145, 165, 185, 205, 225, 236, 16, 27, 47, 67, 87, 107, 127, 147, 167, 187, 207, 226, 238, 18, 29, 49, 69, 89, 109, 129, 149, 169, 189, 209, 228, 240, 20, 31, 51, 71, 91, 111, 131, 150, 170, 190, 210, 230, 242, 22, 33, 53, 73, 93, 113, 133, 153, 172, 192, 212, 232, 244, 23, 34, 54, 74, 94, 114, 134, 154, 174, 194, 214, 234, 245}},
		// Height 32 as the recogniser's input; the first rows show OpenCV's unclamped
		// vertical weights (rows 0-3 differ in the last column: 233 vs 234 rounding).
		{32, 9, []uint8{11, 36, 64, 93, 122, 151, 179, 208, 233, 11, 35, 64, 93, 122, 151, 179, 208, 233, 11, 36, 64, 93, 122, 151, 179, 208, 233, 11, 36, 64, 93, 122, 151, 180, 208, 233, 12, 36, 65, 94, 122, 151, 180, 209, 233, 12, 37, 65, 94, 123, 152, 181, 209, 234, 12, 37, 66, 95, 123, 152, 181, 210, 234, 13, 37, 66, 95, 124, 153, 181, 210, 235, 13, 38, 67, 96, 124, 153, 182, 211, 235, 14, 39, 67, 96, 125, 154, 182, 211, 236, 14, 39, 68, 96, 125, 154, 183, 212, 236, 15, 39, 68, 97, 126, 155, 183, 212, 237, 15, 40, 69, 97, 126, 155, 184, 213, 237, 16, 40, 69, 98, 127, 156, 184, 213, 238, 16, 41, 70, 98, 127, 156, 185, 214, 238, 17, 41, 70, 99, 128, 157, 185, 214, 239, 17, 42, 70, 99, 128, 157, 186, 214, 239, 18, 42, 71, 100, 129, 157, 186, 215, 239, 18, 43, 71, 100, 129, 158, 187, 215, 240, 18, 43, 72, 101, 130, 158, 187, 216, 241, 19, 44, 72, 101, 130, 159, 188, 216, 241, 19, 44, 73, 102, 131, 159, 188, 217, 241, 20, 44, 73, 102, 131, 160, 188, 217, 242, 20, 45, 74, 103, 131, 160, 189, 218, 242, 21, 46, 74, 103, 132, 161, 189, 218, 243, 21, 46, 75, 103, 132, 161, 190, 219, 243, 22, 47, 75, 104, 133, 162, 190, 219, 244, 22, 47, 76, 105, 133, 162, 191, 220, 244, 23, 47, 76, 105, 134, 162, 191, 220, 245, 23, 47, 76, 105, 134, 163, 191, 220, 245, 23, 47, 76, 105, 134, 163, 191, 220, 245, 23, 48, 76, 105, 134, 163, 191, 220, 245}},
	} {
		got := make([]uint8, tc.h*tc.w)
		resizeLinear8(got, tc.h, tc.w, goldenPlane(), 5, 7)
		if !slices.Equal(got, tc.want) {
			t.Errorf("resize 5x7 -> %dx%d:\n got %v\nwant %v", tc.h, tc.w, got, tc.want)
		}
	}
}

// goldenImage is a 10 x 12 BGR image: channel c of pixel (x, y) is ((36y + 3x + c)*53 + 7) mod
// 256, OpenCV's interleaved index times 53.
func goldenImage() bgr8 {
	m := newBGR8(10, 12)
	for y := range 10 {
		for x := range 12 {
			for c := range 3 {
				m.plane(c)[y*12+x] = uint8(((36*y+3*x+c)*53 + 7) % 256)
			}
		}
	}
	return m
}

// TestRotateCrop: get_rotate_crop_image's perspective crop with bicubic weights, replicated
// borders, and the quarter turn of a tall box.
func TestRotateCrop(t *testing.T) {
	for _, tc := range []struct {
		box  quad
		h, w int
		want [3][]uint8
	}{
		// A tilted box reaching the image's edge: 8 x 6 (sides 8.06 and 6.08, truncated).
		{quad{{1, 2}, {9, 1}, {10, 7}, {2, 8}}, 6, 8, [3][]uint8{
			{142, 52, 188, 152, 80, 89, 188, 119, 17, 156, 101, 177, 41, 128, 100, 229, 66, 74, 151, 164, 173, 77, 152, 139, 210, 56, 126, 172, 124, 75, 124, 180, 206, 203, 82, 170, 74, 83, 96, 173, 137, 23, 146, 119, 206, 70, 146, 91},
			{195, 105, 25, 124, 133, 142, 16, 161, 70, 208, 57, 77, 127, 187, 148, 43, 148, 128, 198, 56, 123, 147, 202, 89, 111, 143, 185, 187, 98, 163, 47, 79, 58, 162, 172, 82, 97, 144, 195, 42, 151, 78, 205, 84, 92, 110, 198, 182},
			{248, 147, 78, 177, 34, 114, 78, 214, 84, 32, 154, 132, 182, 39, 156, 99, 216, 62, 92, 151, 190, 155, 83, 184, 164, 214, 80, 133, 178, 166, 82, 133, 155, 24, 110, 114, 174, 58, 108, 100, 204, 123, 41, 139, 149, 204, 56, 170},
		}},
		// A box 3 wide and 9 tall is read turned: 9 wide, 3 tall.
		{quad{{3, 0}, {6, 0}, {6, 9}, {3, 9}}, 3, 9, [3][]uint8{
			{34, 150, 10, 126, 242, 102, 218, 78, 194, 131, 247, 107, 223, 83, 199, 59, 175, 35, 228, 88, 204, 64, 180, 40, 156, 16, 132},
			{87, 203, 63, 179, 39, 155, 15, 131, 247, 184, 44, 160, 20, 136, 252, 112, 228, 88, 25, 141, 1, 117, 233, 93, 209, 69, 185},
			{140, 0, 116, 232, 92, 208, 68, 184, 44, 237, 97, 213, 73, 189, 49, 165, 25, 141, 78, 194, 54, 170, 30, 146, 6, 122, 238},
		}},
	} {
		got, ok := rotateCrop(goldenImage(), tc.box)
		if !ok || got.h != tc.h || got.w != tc.w {
			t.Fatalf("crop of %v: %dx%d (ok %v), want %dx%d", tc.box, got.h, got.w, ok, tc.h, tc.w)
		}
		for c := range 3 {
			if !slices.Equal(got.plane(c), tc.want[c]) {
				t.Errorf("crop of %v, channel %d:\n got %v\nwant %v", tc.box, c, got.plane(c), tc.want[c])
			}
		}
	}
}

// TestRecRows: the crops of each image are sorted by aspect ratio and padded in PaddleOCR's
// batches of 6 to int(32 * max(10, widest ratio)); crops of different images never share a
// batch.
func TestRecRows(t *testing.T) {
	crop := func(w int) bgr8 { return newBGR8(10, w) }
	// Image 0: ratios 1, 2, ..., 7 (w = 10..70) given in reverse; image 1: ratio 15.
	var crops []bgr8
	var from []int
	for w := 70; w >= 10; w -= 10 {
		crops, from = append(crops, crop(w)), append(from, 0)
	}
	crops, from = append(crops, crop(150)), append(from, 1)
	rows := recRows(crops, from)
	if len(rows) != 8 {
		t.Fatalf("%d rows, want 8", len(rows))
	}
	for k, r := range rows {
		want := 320 // the first six of image 0 (ratios 1..6) and the seventh alone
		if r.out == 7 {
			want = 480 // int(32 * 15)
		}
		if r.padded != want || r.w != 32*r.crop.w/10 {
			t.Errorf("row %d (crop %d, %d wide): resized to %d, padded to %d; want %d, %d", k, r.out, r.crop.w, r.w, r.padded, 32*r.crop.w/10, want)
		}
	}
	if rows[0].out != 6 || rows[5].out != 1 || rows[6].out != 0 {
		t.Errorf("rows not in ascending ratio: %d, %d, %d", rows[0].out, rows[5].out, rows[6].out)
	}
}
