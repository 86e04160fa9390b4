// ProgressiveJpeg: a valid progressive 4:4:4 JPEG with exactly `scans` scans, written with
// libjpeg (cjpeg caps scan scripts at 100). Used by the image and server tests for scan-limit
// bombs.
#pragma once

#include <jpeglib.h>

#include <cstdio>  // jpeglib.h needs FILE and size_t first
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/kernels/test_rng.h"

namespace vlmserve::testing {

// A progressive 4:4:4 JPEG with exactly `scans` scans (a valid progression: DC, then each AC
// coefficient of each component alone, refined bit by bit). libjpeg writes it; cjpeg caps at 100.
inline std::string ProgressiveJpeg(int scans, int side = 16) {
  std::vector<jpeg_scan_info> script;
  script.push_back({3, {0, 1, 2, 0}, 0, 0, 0, 0});
  for (int c = 0; c < 3 && static_cast<int>(script.size()) < scans; ++c) {
    for (int k = 1; k < 64 && static_cast<int>(script.size()) < scans; ++k) {
      script.push_back({1, {c, 0, 0, 0}, k, k, 0, 10});
      for (int al = 10; al > 0 && static_cast<int>(script.size()) < scans; --al) {
        script.push_back({1, {c, 0, 0, 0}, k, k, al, al - 1});
      }
    }
  }
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* out = nullptr;
  unsigned long out_size = 0;
  jpeg_mem_dest(&c, &out, &out_size);
  c.image_width = c.image_height = static_cast<JDIMENSION>(side);
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  for (int i = 0; i < 3; ++i) c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
  c.optimize_coding = TRUE;
  c.scan_info = script.data();
  c.num_scans = static_cast<int>(script.size());
  jpeg_start_compress(&c, TRUE);
  std::vector<uint8_t> row(static_cast<size_t>(side) * 3);
  Rng rng(scans);
  while (c.next_scanline < c.image_height) {
    for (auto& v : row) v = static_cast<uint8_t>(rng.Next());
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  std::string s(reinterpret_cast<char*>(out), out_size);
  jpeg_destroy_compress(&c);
  std::free(out);
  return s;
}

}  // namespace vlmserve::testing
