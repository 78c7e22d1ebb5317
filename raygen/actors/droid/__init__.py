"""DROID recordings on CPU (backend ``droid``), and the reader of DROID's raw release that the GPU backend
(``raygen.actors.zed``) shares: the tree, trajectory.h5, intrinsics without a GPU, the Robotiq 2F-85's
contact points, MP4 frames and stereo depth. No module here imports Ray or a GPU SDK."""
