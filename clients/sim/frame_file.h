/*
 * frame_file.h: one rendered frame as a picture file a person can open (mpc-sim
 * --save-frames): binary PPM (P6, 8 bits per channel), which needs no image library.
 */
#ifndef MPC_SIM_FRAME_FILE_H
#define MPC_SIM_FRAME_FILE_H

#include <stddef.h>

/* Writes rgb (height x width x 3 bytes, top row first) to path as a P6 PPM, replacing
 * the file. Returns 0 or a negative errno with a message naming the file in err. */
int sim_frame_write_ppm(const char *path, const unsigned char *rgb, int width, int height,
                        char *err, size_t errlen);

#endif
