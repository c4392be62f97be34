"""tryon.runtime: virtual try-on with ONNX Runtime, NumPy and OpenCV only."""
import os

# NumPy's OpenBLAS keeps its worker threads spinning for a while after every product;
# on a small machine they then steal the cores from ONNX Runtime's next network (GMM ran
# 2x slower right after the JPP-Net merge). Our NumPy work is small, so one BLAS thread
# loses nothing. Only effective before NumPy is first imported; a caller's setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
