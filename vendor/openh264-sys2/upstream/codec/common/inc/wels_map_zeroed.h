/*
 * rtcam: large zeroed blocks as anonymous mappings of their own, for both of
 * openh264's allocators (common/src/memory_align.cpp, processing/src/common/memory.cpp).
 * The kernel's fresh pages are zero already and become resident only where they
 * are written, where malloc + memset made every page resident for the block's life.
 * The mapping's length is kept in its first bytes; an allocator returns a pointer
 * WELS_MAP_LEAD bytes in and tags what it keeps for its free with the low bit (a
 * mapping is page aligned, a malloc block 8-byte aligned, so the bit is free).
 * Header-only (static inline): each allocator is its own static library.
 */
#ifndef WELS_MAP_ZEROED_H__
#define WELS_MAP_ZEROED_H__

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define WELS_MAP_FROM_BYTES (256 * 1024)
#define WELS_MAP_LEAD 16

/* kuiSize zeroed bytes at WELS_MAP_LEAD into a fresh mapping; NULL when none (or not Linux). */
static inline uint8_t* WelsMapZeroed (const uint32_t kuiSize) {
#if defined(__linux__)
  const size_t kLen = (size_t) kuiSize + WELS_MAP_LEAD;
  void* pMap = mmap (NULL, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pMap == MAP_FAILED)
    return NULL;
  * ((size_t*) pMap) = kLen;
  return (uint8_t*) pMap + WELS_MAP_LEAD;
#else
  (void) kuiSize;
  return NULL;
#endif
}

/* kuiSize zeroed bytes: a mapping from WELS_MAP_FROM_BYTES up, calloc below (or
 * when mapping fails). Returns the block and sets *pKept to what the allocator
 * keeps for WelsFreeKept: the block, tagged if it is mapped. */
static inline uint8_t* WelsAllocZeroed (const uint32_t kuiSize, void** pKept) {
  uint8_t* pBuf = kuiSize >= WELS_MAP_FROM_BYTES ? WelsMapZeroed (kuiSize) : NULL;
  if (pBuf != NULL) {
    *pKept = (void*) ((uintptr_t) pBuf | 1);
    return pBuf;
  }
  pBuf = (uint8_t*) calloc (1, kuiSize);
  *pKept = pBuf;
  return pBuf;
}

/* Frees what an allocator kept: unmaps a tagged block, frees any other. */
static inline void WelsFreeKept (void* pKept) {
  if (((uintptr_t) pKept & 1) == 0) {
    free (pKept);
    return;
  }
#if defined(__linux__)
  uint8_t* pMap = (uint8_t*) ((uintptr_t) pKept & ~ (uintptr_t) 1) - WELS_MAP_LEAD;
  munmap (pMap, * ((size_t*) pMap));
#endif
}

#endif
