<#
.SYNOPSIS
    Set up trainer on Windows: a conda environment, torch from PyTorch's CUDA index, triton-windows, the project
    with its GPU extra, then `python -m trainer doctor` to verify.
.DESCRIPTION
    Run it from a PowerShell where conda works (the "Miniforge Prompt", or after `conda init powershell`):
        powershell -ExecutionPolicy Bypass -File scripts\setup_windows.ps1
        powershell -ExecutionPolicy Bypass -File scripts\setup_windows.ps1 -Cuda cu130 -Recreate
    Python's version comes from spec-file.txt, torch's from the pins below (which tests/test_setup_files.py checks
    against pyproject.toml). Running it again reuses the environment and only installs what is missing.
.PARAMETER Cuda
    The CUDA build of torch: cu128 (default; needs an NVIDIA driver from the 528 series or newer) or cu130 (driver 580+).
#>
[CmdletBinding()]
param(
    [string]$EnvName = "trainer",
    [ValidateSet("cu126", "cu128", "cu130")]
    [string]$Cuda = "cu128",
    [switch]$Recreate
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

# Versions that go together: torchvision 0.26 is built for torch 2.11, which expects the triton 3.6 series.
$TorchVersion = "2.11.0"
$TorchvisionVersion = "0.26.0"
$TritonWindows = "triton-windows>=3.6,<3.7"

$Root = Split-Path -Parent $PSScriptRoot

function Invoke-Native {
    param([string]$What, [scriptblock]$Command)
    Write-Host "==> $What" -ForegroundColor Cyan
    $global:LASTEXITCODE = 0
    & $Command
    if ($LASTEXITCODE -ne 0) {
        throw "$What failed (exit code $LASTEXITCODE); see the messages above."
    }
}

if (-not (Get-Command conda -ErrorAction SilentlyContinue)) {
    throw "conda was not found. Install Miniforge (conda-forge's installer), then run this from the Miniforge Prompt or after 'conda init powershell'."
}
if (-not (Get-Command nvidia-smi -ErrorAction SilentlyContinue)) {
    Write-Warning "nvidia-smi was not found: install the NVIDIA driver first, or torch will not see the GPU."
}

$specLine = Select-String -Path (Join-Path $Root "spec-file.txt") -Pattern '^python=(\S+)$' | Select-Object -First 1
if (-not $specLine) {
    throw "spec-file.txt has no python= line."
}
$PythonVersion = $specLine.Matches[0].Groups[1].Value

$envs = (conda env list --json | ConvertFrom-Json).envs
$existing = $envs | Where-Object { (Split-Path -Leaf $_) -eq $EnvName } | Select-Object -First 1
if ($existing -and $Recreate) {
    Invoke-Native "Removing the environment $EnvName" { conda env remove --yes --name $EnvName }
    $existing = $null
}
if (-not $existing) {
    Invoke-Native "Creating the conda environment $EnvName (Python $PythonVersion)" {
        conda create --yes --name $EnvName --channel conda-forge --override-channels "python=$PythonVersion" pip
    }
}
$Python = (conda run --name $EnvName python -c "import sys; print(sys.executable)").Trim()
Write-Host "Python: $Python"

Invoke-Native "torch $TorchVersion and torchvision $TorchvisionVersion ($Cuda build)" {
    & $Python -m pip install "torch==$TorchVersion" "torchvision==$TorchvisionVersion" --index-url "https://download.pytorch.org/whl/$Cuda"
}
Invoke-Native "triton-windows (the compiler unsloth's kernels need)" {
    & $Python -m pip install $TritonWindows
}

# The constraints keep pip from replacing this torch while it resolves unsloth, xformers and bitsandbytes.
$constraints = New-TemporaryFile
try {
    Set-Content -Path $constraints -Value @("torch==$TorchVersion", "torchvision==$TorchvisionVersion") -Encoding ascii
    Invoke-Native "trainer with its GPU extra (unsloth, unsloth_zoo, bitsandbytes)" {
        & $Python -m pip install -e "$Root[gpu]" --constraint $constraints.FullName
    }
}
finally {
    Remove-Item $constraints -ErrorAction SilentlyContinue
}

Push-Location $Root
try {
    Invoke-Native "Checking the install: python -m trainer doctor" { & $Python -m trainer doctor }
}
finally {
    Pop-Location
}
Write-Host "Ready. Activate with 'conda activate $EnvName', then: python -m trainer --profile auto" -ForegroundColor Green
