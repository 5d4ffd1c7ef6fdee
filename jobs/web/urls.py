from django.contrib.auth import views as auth_views
from django.urls import path

from storage.views import local_download

from . import dashboard, views

urlpatterns = [
    path("", views.job_list, name="job-list"),
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html",
                                                redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("upload/", views.job_new, name="job-new"),
    path("upload/validate", views.job_new_validate, name="job-new-validate"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<uuid:job_id>/cancel", views.job_cancel, name="job-cancel"),
    path("jobs/<uuid:job_id>/retry", views.job_retry, name="job-retry"),
    path("jobs/<uuid:job_id>/download", views.job_download, name="job-download"),
    path("dead-letters/", views.dead_letter_list, name="dead-letter-list"),
    path("dead-letters/<int:letter_id>/replay", views.dead_letter_replay, name="dead-letter-replay"),
    path("ops/", dashboard.ops_dashboard, name="ops-dashboard"),
    path("ops/data.json", dashboard.ops_data, name="ops-data"),
    path("ops/bulk/", dashboard.ops_bulk, name="ops-bulk"),
    path("objects/<str:token>", local_download, name="local-object-download"),
]
