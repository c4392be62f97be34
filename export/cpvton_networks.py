"""CP-VTON's GMM and TOM in PyTorch, with module names that give the published state_dict keys.

The layer order inside each nn.Sequential is what fixes the key names
(`extractionA.model.0.weight`, `model.model.1.model.3...`), so it follows the
published networks exactly. Behaviour is that of torch 0.4.1, which trained the
checkpoints: bilinear Upsample without corner alignment, grid_sample with it.
Differences from the original code are only what modern torch needs: `reshape`
after the correlation, `torch.where` instead of masked assignment, explicit
`align_corners`, no `.cuda()` calls.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FINE_HEIGHT, FINE_WIDTH = 256, 192
GRID_SIZE = 5  # 5x5 TPS control points: theta has 2 * 25 values


class FeatureExtraction(nn.Module):
    """Conv -> ReLU -> BatchNorm blocks (this order, as published), 256x192 -> 16x12x512."""

    def __init__(self, input_nc: int, ngf: int = 64, n_layers: int = 3):
        super().__init__()
        layers = [nn.Conv2d(input_nc, ngf, 4, 2, 1), nn.ReLU(True), nn.BatchNorm2d(ngf)]
        for i in range(n_layers):
            in_ngf = min(2**i * ngf, 512)
            out_ngf = 2 ** (i + 1) * ngf if 2**i * ngf < 512 else 512
            layers += [nn.Conv2d(in_ngf, out_ngf, 4, 2, 1), nn.ReLU(True), nn.BatchNorm2d(out_ngf)]
        layers += [nn.Conv2d(512, 512, 3, 1, 1), nn.ReLU(True), nn.BatchNorm2d(512)]
        layers += [nn.Conv2d(512, 512, 3, 1, 1), nn.ReLU(True)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class FeatureL2Norm(nn.Module):
    def forward(self, feature):
        norm = torch.pow(torch.sum(torch.pow(feature, 2), 1) + 1e-6, 0.5).unsqueeze(1)
        return feature / norm


class FeatureCorrelation(nn.Module):
    """All-pairs dot products of two feature maps: [B, h*w, h, w] (192 channels at 16x12)."""

    def forward(self, feature_a, feature_b):
        b, c, h, w = feature_a.shape
        feature_a = feature_a.transpose(2, 3).reshape(b, c, h * w)
        feature_b = feature_b.reshape(b, c, h * w).transpose(1, 2)
        product = torch.bmm(feature_b, feature_a)
        return product.reshape(b, h, w, h * w).transpose(2, 3).transpose(1, 2)


class FeatureRegression(nn.Module):
    def __init__(self, input_nc: int = 192, output_dim: int = 2 * GRID_SIZE**2):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(input_nc, 512, 4, 2, 1), nn.BatchNorm2d(512), nn.ReLU(True),
            nn.Conv2d(512, 256, 4, 2, 1), nn.BatchNorm2d(256), nn.ReLU(True),
            nn.Conv2d(256, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(True),
            nn.Conv2d(128, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(True),
        )
        self.linear = nn.Linear(64 * 4 * 3, output_dim)
        self.tanh = nn.Tanh()

    def forward(self, x):
        x = self.conv(x)
        return self.tanh(self.linear(x.reshape(x.size(0), -1)))


def control_points(grid_size: int = GRID_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Base control points (x, y), x varying slowest, as the original meshgrid orders them."""
    axis = np.linspace(-1, 1, grid_size)
    p_y, p_x = np.meshgrid(axis, axis)
    return p_x.reshape(-1), p_y.reshape(-1)


class TpsGridGen(nn.Module):
    """The original thin-plate-spline grid generator, 5-D broadcasting and all, in float32.

    Kept as the reference that the exported linear form is checked against.
    """

    def __init__(self, out_h: int = FINE_HEIGHT, out_w: int = FINE_WIDTH, grid_size: int = GRID_SIZE):
        super().__init__()
        self.N = grid_size * grid_size
        grid_x, grid_y = np.meshgrid(np.linspace(-1, 1, out_w), np.linspace(-1, 1, out_h))
        p_x, p_y = (torch.tensor(p, dtype=torch.float32).unsqueeze(1) for p in control_points(grid_size))
        # Buffers, not parameters, and not persistent: the published state_dict has no TPS entries.
        self.register_buffer("grid_X", torch.FloatTensor(grid_x).unsqueeze(0).unsqueeze(3), persistent=False)
        self.register_buffer("grid_Y", torch.FloatTensor(grid_y).unsqueeze(0).unsqueeze(3), persistent=False)
        self.register_buffer("P_X_base", p_x.clone(), persistent=False)
        self.register_buffer("P_Y_base", p_y.clone(), persistent=False)
        self.register_buffer("Li", self.compute_L_inverse(p_x, p_y).unsqueeze(0), persistent=False)
        self.register_buffer("P_X", p_x.unsqueeze(2).unsqueeze(3).unsqueeze(4).transpose(0, 4), persistent=False)
        self.register_buffer("P_Y", p_y.unsqueeze(2).unsqueeze(3).unsqueeze(4).transpose(0, 4), persistent=False)

    def forward(self, theta):
        return self.apply_transformation(theta, torch.cat((self.grid_X, self.grid_Y), 3))

    @staticmethod
    def compute_L_inverse(X, Y):
        n = X.size(0)
        Xmat, Ymat = X.expand(n, n), Y.expand(n, n)
        dist_squared = (Xmat - Xmat.transpose(0, 1)) ** 2 + (Ymat - Ymat.transpose(0, 1)) ** 2
        dist_squared = torch.where(dist_squared == 0, torch.ones_like(dist_squared), dist_squared)
        K = dist_squared * torch.log(dist_squared)
        P = torch.cat((torch.ones(n, 1), X, Y), 1)
        L = torch.cat((torch.cat((K, P), 1), torch.cat((P.transpose(0, 1), torch.zeros(3, 3)), 1)), 0)
        return torch.inverse(L)

    def apply_transformation(self, theta, points):
        theta = theta.unsqueeze(2).unsqueeze(3)
        n, batch_size = self.N, theta.size(0)
        Q_X = theta[:, :n, :, :].squeeze(3) + self.P_X_base
        Q_Y = theta[:, n:, :, :].squeeze(3) + self.P_Y_base
        points_h, points_w = points.size(1), points.size(2)
        P_X = self.P_X.expand((1, points_h, points_w, 1, n))
        P_Y = self.P_Y.expand((1, points_h, points_w, 1, n))

        def repeat_over_points(weights):  # [B, k, 1] -> [B, H, W, 1, k]
            return weights.unsqueeze(3).unsqueeze(4).transpose(1, 4).repeat(1, points_h, points_w, 1, 1)

        Li_w = self.Li[:, :n, :n].expand((batch_size, n, n))
        Li_a = self.Li[:, n:, :n].expand((batch_size, 3, n))
        W_X, W_Y = repeat_over_points(torch.bmm(Li_w, Q_X)), repeat_over_points(torch.bmm(Li_w, Q_Y))
        A_X, A_Y = repeat_over_points(torch.bmm(Li_a, Q_X)), repeat_over_points(torch.bmm(Li_a, Q_Y))

        points_X = points[:, :, :, 0].unsqueeze(3).unsqueeze(4).expand(points[:, :, :, 0].size() + (1, n))
        points_Y = points[:, :, :, 1].unsqueeze(3).unsqueeze(4).expand(points[:, :, :, 1].size() + (1, n))
        dist_squared = (points_X - P_X) ** 2 + (points_Y - P_Y) ** 2
        dist_squared = torch.where(dist_squared == 0, torch.ones_like(dist_squared), dist_squared)
        U = dist_squared * torch.log(dist_squared)

        points_X_batch = points[:, :, :, 0].unsqueeze(3).expand((batch_size, points_h, points_w, 1))
        points_Y_batch = points[:, :, :, 1].unsqueeze(3).expand((batch_size, points_h, points_w, 1))
        x_prime = (A_X[..., 0] + A_X[..., 1] * points_X_batch + A_X[..., 2] * points_Y_batch
                   + torch.sum(W_X * U.expand_as(W_X), 4))
        y_prime = (A_Y[..., 0] + A_Y[..., 1] * points_X_batch + A_Y[..., 2] * points_Y_batch
                   + torch.sum(W_Y * U.expand_as(W_Y), 4))
        return torch.cat((x_prime, y_prime), 3)


def tps_matrix(out_h: int = FINE_HEIGHT, out_w: int = FINE_WIDTH, grid_size: int = GRID_SIZE) -> np.ndarray:
    """[out_h*out_w, n] float64 matrix M with grid_axis = M @ (theta_axis + base_axis).

    The TPS warp is linear in the control points: the affine and radial weights are
    Li @ Q, and every grid point combines them with coefficients that depend only on
    its position. Folding Li into those coefficients gives one constant matrix, the
    same for the x and the y axis.
    """
    p_x, p_y = control_points(grid_size)
    n = p_x.size
    d2 = (p_x[:, None] - p_x[None, :]) ** 2 + (p_y[:, None] - p_y[None, :]) ** 2
    P = np.stack([np.ones(n), p_x, p_y], 1)
    L = np.block([[radial(d2), P], [P.T, np.zeros((3, 3))]])
    Li = np.linalg.inv(L)
    gx, gy = np.meshgrid(np.linspace(-1, 1, out_w), np.linspace(-1, 1, out_h))
    gx, gy = gx.reshape(-1, 1), gy.reshape(-1, 1)
    U = radial((gx - p_x) ** 2 + (gy - p_y) ** 2)  # [points, n]
    affine = np.concatenate([np.ones_like(gx), gx, gy], 1)  # [points, 3]
    return U @ Li[:n, :n] + affine @ Li[n:, :n]


def radial(d2: np.ndarray) -> np.ndarray:
    """r^2 log r^2, 0 at r = 0 (its limit; the original sets r^2 = 1 there to the same effect)."""
    return d2 * np.log(np.where(d2 == 0, 1.0, d2))


class LinearTpsGridGen(nn.Module):
    """TpsGridGen as one MatMul: grid[..., axis] = M @ (theta_axis + base_axis). For export."""

    def __init__(self, out_h: int = FINE_HEIGHT, out_w: int = FINE_WIDTH, grid_size: int = GRID_SIZE):
        super().__init__()
        self.out_h, self.out_w, self.n = out_h, out_w, grid_size * grid_size
        base = np.concatenate(control_points(grid_size))
        self.register_buffer("matrix", torch.tensor(tps_matrix(out_h, out_w, grid_size), dtype=torch.float32),
                             persistent=False)
        self.register_buffer("base", torch.tensor(base.reshape(1, 2, self.n), dtype=torch.float32),
                             persistent=False)

    def forward(self, theta):
        q = theta.reshape(-1, 2, self.n) + self.base  # [B, 2 (x, y), n]
        grid = torch.matmul(self.matrix, q.transpose(1, 2))  # [B, H*W, 2]
        return grid.reshape(-1, self.out_h, self.out_w, 2)


def warp_cloth(cloth, grid):
    """The seed's grid_sample: bilinear, border padding, corner-aligned (torch 0.4.1 behaviour)."""
    return F.grid_sample(cloth, grid, mode="bilinear", padding_mode="border", align_corners=True)


class GMM(nn.Module):
    """Geometric Matching Module; `agnostic_channels` is 22 (cp-vton) or 20 (GrayXu)."""

    def __init__(self, agnostic_channels: int):
        super().__init__()
        self.extractionA = FeatureExtraction(agnostic_channels)
        self.extractionB = FeatureExtraction(3)
        self.l2norm = FeatureL2Norm()
        self.correlation = FeatureCorrelation()
        self.regression = FeatureRegression(input_nc=192, output_dim=2 * GRID_SIZE**2)
        self.gridGen = TpsGridGen(FINE_HEIGHT, FINE_WIDTH, grid_size=GRID_SIZE)

    def regress_theta(self, agnostic, cloth):
        return self.garment_theta(self.person_features(agnostic), cloth)

    def person_features(self, agnostic):
        """The half that sees only the person: extraction A, L2-normalised ([B, 512, 16, 12])."""
        return self.l2norm(self.extractionA(agnostic))

    def garment_theta(self, person_features, cloth):
        """The rest: extraction B on the garment, the correlation with the person's features, regression."""
        feature_b = self.l2norm(self.extractionB(cloth))
        return self.regression(self.correlation(person_features, feature_b))

    def forward(self, agnostic, cloth):
        theta = self.regress_theta(agnostic, cloth)
        return self.gridGen(theta), theta


class UnetSkipConnectionBlock(nn.Module):
    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False,
                 norm_layer=nn.InstanceNorm2d):
        super().__init__()
        self.outermost = outermost
        use_bias = norm_layer == nn.InstanceNorm2d
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, 2, 1, bias=use_bias)
        # torch 0.4.1 upsampled without aligning corners; say so, newer torch warns otherwise.
        upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        upconv = nn.Conv2d(inner_nc if innermost else inner_nc * 2, outer_nc, 3, 1, 1, bias=use_bias)
        up = [nn.ReLU(True), upsample, upconv, norm_layer(outer_nc)]
        if outermost:
            layers = [downconv, submodule] + up
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), downconv] + up
        else:
            layers = [nn.LeakyReLU(0.2, True), downconv, norm_layer(inner_nc), submodule] + up
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """TOM: UnetGenerator(25 or 23, 4, 6, ngf=64, InstanceNorm2d) as cp-vton's test.py builds it."""

    def __init__(self, input_nc, output_nc=4, num_downs=6, ngf=64, norm_layer=nn.InstanceNorm2d):
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm_layer=norm_layer, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm_layer=norm_layer)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm_layer=norm_layer)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm_layer=norm_layer)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block,
                                             outermost=True, norm_layer=norm_layer)

    def forward(self, x):
        return self.model(x)


def tom_outputs(unet: UnetGenerator, agnostic, warped_cloth):
    """rendered (tanh), mask (sigmoid) and the composite, as cp-vton's test_tom computes them."""
    out = unet(torch.cat([agnostic, warped_cloth], 1))
    rendered, mask = torch.tanh(out[:, :3]), torch.sigmoid(out[:, 3:])
    return rendered, mask, warped_cloth * mask + rendered * (1 - mask)
